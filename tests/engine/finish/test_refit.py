"""Refitting: how many steps and seeds the time buys, and a refit run's record."""

from __future__ import annotations

from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial

from automel.engine.finish.parts import Member
from automel.engine.finish.refit import REFIT_LONGER, refit_members, refit_plan, refit_workspace
from automel.engine.handle import StudyHandle


def _trial(steps: int, seconds: float) -> FrozenTrial:
    return optuna.trial.create_trial(value=0.5, user_attrs={"steps": steps, "train_seconds": seconds})


def test_the_plan_scales_with_the_data_and_the_time() -> None:
    trial = _trial(100, 10.0)  # 10 steps a second
    assert refit_plan(trial, 1.25, None) == (125, 1)
    assert refit_plan(trial, 1.25, None, fixed=7) == (7, 1)
    assert refit_plan(trial, 1.0, 5.0) == (0, 0)  # 45 affordable steps < half the base: keep the trial's model
    assert refit_plan(trial, 1.0, 50.0) == (450, 1)
    longest = int(100 * REFIT_LONGER)
    assert refit_plan(trial, 1.0, 10_000.0, max_seeds=3) == (longest, 3)


def test_a_refit_trains_on_every_labelled_utterance(old_study: tuple[StudyHandle, optuna.Study],
                                                    old_data: Path) -> None:
    handle, study = old_study
    work = handle.workspace(study, old_data)
    everything = refit_workspace(work)
    assert len(everything.split.train) == len(work.split.train) + len(work.split.valid)
    assert len(everything.split.valid) == 0
    lines: list[str] = []
    fitted = refit_members([Member(study.trials[4], 1.0)], work, seeds=1, fixed_steps=3, deterministic=True,
                           device=torch.device("cpu"), deadline=None, note=lines.append)
    (model, record), = fitted[0].models
    info = record.extra["refit"]
    assert info["trial"] == 4 and info["steps"] == 3 and info["held_out_score"] is None
    assert info["utterances"] == len(everything.split.train) and record.result["valid_acc"] is None
    assert isinstance(model, torch.nn.Module) and len(fitted[0].curves[0]) >= 1
