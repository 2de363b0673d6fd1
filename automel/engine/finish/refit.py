"""Step 2 after the search: refit each chosen configuration on all labelled data (AutoGluon's recipe).

Each member is trained again on training + validation utterances. The step budget comes from what the
search learned: the trial's steps, scaled by the added data, and then as much longer as the time left
allows (at most ``REFIT_LONGER`` times). A single model with time to spare gets several seeds, averaged
like an ensemble. A refit model has no held-out score: its record says so and names the trial, and its
validation accuracy, that it came from.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np
import torch
from optuna.trial import FrozenTrial

from automel.engine.banks import refit_banks
from automel.engine.finish.parts import Fitted, Member, Note
from automel.model_config import ModelConfig
from automel.train.config import RunSettings
from automel.train.device import release_memory
from automel.train.fit import Workspace, metrics_lines, train_run

# A refit trains at most this many times the (data-scaled) steps of its trial: it uses the time the user gave,
# with a bound for the rare case of trials that were far too short for the time left.
REFIT_LONGER = 20.0
ENSEMBLE_MEMBER_LONGER = 4.0  # each ensemble member's refit must still be this many times its trial's steps


def refit_workspace(work: Workspace) -> Workspace:
    """The same store with every labelled utterance in training and nothing held out."""
    from automel.data.split import Split

    split = work.split
    everything = np.sort(np.concatenate([split.train, split.valid]))
    return Workspace(work.store, Split(everything, np.empty(0, dtype=np.int64), split.seed, split.valid_fraction))


def data_ratio(work: Workspace) -> float:
    """How much more data a refit trains on than a trial did: (train + valid) / train."""
    return (len(work.split.train) + len(work.split.valid)) / max(len(work.split.train), 1)


def steps_per_second(trial: FrozenTrial) -> float:
    """The trial's training speed (without its validations, which a refit skips)."""
    seconds = trial.user_attrs.get("train_seconds", trial.user_attrs.get("seconds"))
    return int(trial.user_attrs.get("steps") or 1) / max(float(seconds or 0.0), 1e-3)


def refit_plan(trial: FrozenTrial, ratio: float, seconds: float | None, max_seeds: int = 1,
               fixed: int | None = None) -> tuple[int, int]:
    """``(steps, seeds)`` for refitting ``trial`` on ``ratio`` times its training data.

    ``fixed`` steps win. Otherwise the base is the trial's steps scaled by the data; with ``seconds`` to
    spend, the run is stretched to fill them (at the trial's measured speed, with a 10 % margin) up to
    ``REFIT_LONGER`` times the base, and time for several such runs buys up to ``max_seeds`` seeds.
    ``steps`` is 0 when the time left cannot even pay for half the base: the trial's own model is better.
    """
    if fixed is not None:
        return fixed, 1
    trained = int(trial.user_attrs.get("steps") or 1)
    base = max(1, math.ceil(trained * ratio))
    if seconds is None:
        return base, 1
    affordable = seconds * steps_per_second(trial) * 0.9
    longest = int(base * REFIT_LONGER)
    if affordable < base * 0.5:
        return 0, 0
    if affordable >= 2 * longest:
        return longest, max(1, min(max_seeds, int(affordable // longest)))
    return int(min(longest, affordable)), 1


def refit_members(members: list[Member], work: Workspace, *, seeds: int, fixed_steps: int | None,
                  deterministic: bool, device: torch.device, deadline: float | None, note: Note) -> list[Fitted]:
    """Each member refit on all labelled data within the monotonic ``deadline``, its time shared equally."""
    everything = refit_workspace(work)
    ratio = data_ratio(work)
    fitted = []
    for index, member in enumerate(members):
        share = None if deadline is None else (deadline - time.monotonic()) / (len(members) - index)
        steps, runs = refit_plan(member.trial, ratio, share, seeds if len(members) == 1 else 1, fixed_steps)
        if steps == 0 and member.model is not None and member.record is not None:
            note(f"no time left to refit trial {member.trial.number}; its own model is exported")
            fitted.append(Fitted(member, [(member.model, member.record)]))
            continue
        until = deadline
        if steps == 0:  # no time left and no trial weights to fall back on: train briefly, late rather than never
            steps, runs, until = refit_plan(member.trial, ratio, None)[0] // 2 or 1, 1, None
        done = [refit_one(member, everything, steps, k, device, until, note, deterministic) for k in range(runs)]
        fitted.append(Fitted(member, [(model, record) for model, record, _ in done], [curve for *_, curve in done]))
    return fitted


def refit_one(member: Member, everything: Workspace, steps: int, seed_index: int, device: torch.device,
              deadline: float | None, note: Note, deterministic: bool = False
              ) -> tuple[torch.nn.Module, ModelConfig, list[dict[str, Any]]]:
    """One refit run of ``member`` (seed ``seed_index``): its model, its record (no held-out score), its log."""
    seed = int(member.trial.user_attrs.get("seed", 0)) + 7919 * (seed_index + 1)
    note(f"refit of trial {member.trial.number} on all {len(everything.split.train)} labelled utterances: "
         f"{steps} steps, seed {seed}")
    # The tail average replaces the last weights only where the trial's own run found it better on validation.
    trusted = bool((member.trial.user_attrs.get("averaging") or {}).get("wins"))
    banks = refit_banks(member.trial)  # the noise and RIR banks the trial trained with
    settings = RunSettings(**banks, steps=steps, valid_every=steps, seed=seed, validate=False, deadline=deadline,
                           deterministic=deterministic, average_trusted=trusted)
    try:
        model, result, record = train_run(member.trial.params, everything, settings, device)
    finally:
        release_memory(device)
    info = {"trial": member.trial.number, "trial_valid_acc": member.trial.value, "data": "train+valid",
            "utterances": len(everything.split.train), "steps": result.steps, "planned_steps": steps,
            "seed": seed, "seconds": round(result.seconds, 2), "held_out_score": None,
            "schedule": result.schedule, "annealed": result.annealed, "final_lr": result.final_lr,
            "averaged": bool(result.averaging and result.averaging.get("used"))}
    record = dataclasses.replace(record, result={**record.result, "valid_acc": None},
                                 extra={**record.extra, "refit": info})
    return model, record, metrics_lines(result)
