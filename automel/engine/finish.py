"""After the search: choose an ensemble, refit on all labelled data, export (AutoGluon's recipe).

1. **Candidates.** The best completed trials with kept weights, one per distinct configuration.
2. **Ensemble.** Caruana's greedy selection on their validation probabilities
   (:func:`automel.ensemble.greedy_ensemble`). It is used only when it beats the best single trial on
   validation accuracy; otherwise the best trial goes on alone.
3. **Refit.** Each chosen configuration is trained again on training + validation utterances. The step
   budget comes from what the search learned: the trial's steps, scaled by the added data, and then as
   much longer as the time left allows (at most ``REFIT_LONGER`` times). A single model with time to
   spare gets several seeds, averaged like an ensemble. A refit model has no held-out score: the card says
   so and names the trial, and its validation accuracy, that it came from.
4. **Export.** Written to a temporary folder and renamed, so the previous export stays whole until the
   new one is complete; Ctrl-C or a crash in any step leaves it, and every finished trial, untouched.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from automel.adapt import ADAPTATION, adapt_export
from automel.engine.artifacts import artifact_store, download_trial, has_weights
from automel.engine.banks import refit_banks
from automel.engine.budget import above_chance
from automel.engine.constraints import Constraints, feasible_complete, is_feasible
from automel.engine.study import artifact_dir
from automel.errors import StudyError
from automel.model_folder import load_run
from automel.runs import RunRecord, write_run_dir
from automel.train.config import RunSettings
from automel.train.device import autocast_dtype, release_memory
from automel.train.run import Workspace, metrics_lines, test_submission, train_run

# A refit trains at most this many times the (data-scaled) steps of its trial: it uses the time the user gave,
# with a bound for the rare case of trials that were far too short for the time left.
REFIT_LONGER = 20.0
ENSEMBLE_MEMBER_LONGER = 4.0  # each ensemble member's refit must still be this many times its trial's steps
Note = Callable[[str], None]  # progress lines for the CLI (library code never prints)


@dataclass(frozen=True)
class FinishOptions:
    refit: bool = True
    ensemble_size: int = 3  # most members; 1 = never an ensemble
    refit_seeds: int = 1  # most seeds of a single refit model
    steps: int | None = None  # fixed refit steps (``automel refit --steps``); None: from the trial and the time
    deterministic: bool = False  # deterministic kernels only (RunSettings.deterministic)
    formats: tuple[str, ...] = ()  # deployable files written into the export too (automel.exporting.FORMATS)
    adapt: str = "none"  # none | test | a folder: the statistics the export adapts to (automel.adapt)


@dataclass
class Member:
    """One configuration of the export: the trial it comes from and the weight it gets."""

    trial: FrozenTrial
    weight: float
    model: torch.nn.Module | None = None  # the trial's own weights (None when they were not kept)
    record: RunRecord | None = None


@dataclass
class FinishResult:
    path: Path
    kind: str  # "trial", "refit" or "ensemble"
    members: list[dict[str, Any]] = field(default_factory=list)
    ensemble: dict[str, float] | None = None  # validation accuracy of the ensemble vs the best single trial
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase: ensemble, refit, export
    adaptation: dict[str, Any] | None = None  # what the export's statistics were adapted to (automel.adapt)


def finish_study(study: optuna.Study, home: Path, options: FinishOptions, device: torch.device,
                 deadline: float | None = None, data_root: Path | None = None, note: Note = lambda _: None,
                 out: Path | None = None) -> FinishResult:
    """Ensemble, refit and export study ``study``'s best configurations to ``out`` (default ``<study>/best``)."""
    from automel.engine.export import exclusive, study_workspace

    limits = Constraints.of_study(study)
    if limits.active and (options.ensemble_size > 1 or options.refit_seeds > 1):
        note(f"one model, no ensemble or seed average: the study's limits ({limits.describe()}) are per model")
        options = dataclasses.replace(options, ensemble_size=1, refit_seeds=1)
    _say_what_still_runs(study, note)
    work = study_workspace(study, home, data_root)
    marks = [time.monotonic()]
    members, scores = _choose_members(study, home, work, options, device, note, deadline)
    marks.append(time.monotonic())
    ensemble = {"single_valid_acc": members[0].trial.value or 0.0, **scores}
    fitted = _refit_members(members, work, options, device, deadline, note) if options.refit else None
    marks.append(time.monotonic())
    target = out or home / study.study_name / "best"
    target.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(target.parent / ".export.lock"):  # never two exports into one folder at once
        result = _export(study, work, members, fitted, target, ensemble if len(members) > 1 else None,
                         device, options, home)
    if result.adaptation is not None:
        from automel.adapt import Adaptation, describe

        note(describe(Adaptation(**result.adaptation)))  # what the submission was adapted to, or why not
    marks.append(time.monotonic())
    phases = zip(("ensemble", "refit", "export"), marks[:-1], marks[1:], strict=True)
    result.timings = {phase: round(b - a, 3) for phase, a, b in phases}
    return result


def _say_what_still_runs(study: optuna.Study, note: Note) -> None:
    """A refit started while another process still runs trials on the study uses what is finished now."""
    running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    if running:
        finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        note(f"trial{'s' if len(running) > 1 else ''} {', '.join(map(str, running))} of study "
             f"'{study.study_name}' {'are' if len(running) > 1 else 'is'} still running (a search or worker is on "
             f"it, or one was killed): this uses the {finished} complete trials there are now; run it again when "
             f"the search ends")


def _choose_members(study: optuna.Study, home: Path, work: Workspace, options: FinishOptions,
                    device: torch.device, note: Note, deadline: float | None
                    ) -> tuple[list[Member], dict[str, float]]:
    """The best trial alone, or the greedy ensemble of the kept candidates when it validates better; with the
    ensemble's and the best trial's validation scores when an ensemble was considered."""
    store = artifact_store(artifact_dir(home, study.study_name))
    candidates = distinct_best(study, store)
    if not candidates:
        limits = Constraints.of_study(study)
        finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if limits.active and not any(is_feasible(t) for t in finished):
            raise StudyError(f"study '{study.study_name}' has no completed trial within its limits "
                             f"({limits.describe()}): every model was over them; loosen them or use other plugins")
        if not options.refit:
            raise StudyError(f"study '{study.study_name}' has no completed trial to export: none reached the last "
                             f"rung within the time; give it a longer --time-limit or a smaller --steps-per-trial")
        leader = best_reached(study)  # nothing completed (a very short limit): refit the furthest trial
        note(f"no trial reached the last rung; refitting trial {leader.number}, the furthest")
        return [Member(leader, 1.0)], {}
    if not above_chance(candidates[0].value, len(work.split.valid), work.store.num_classes):
        # Every trial is at chance: their ranking is noise. Trust the prior: the first portfolio entry.
        candidates.sort(key=lambda t: (not t.user_attrs.get("portfolio"), t.number))
        note(f"every trial is at chance on validation; refitting trial {candidates[0].number}, the first "
             f"configuration of the portfolio")
        candidates = candidates[:1]
    size = _ensemble_room(candidates[0], work, options, deadline)
    if size < options.ensemble_size:
        note(f"time for {size} long refit{'s' if size > 1 else ''} only: the ensemble may hold at most {size}")
    members = [_with_weights(Member(t, 0.0), store) for t in candidates[: 1 if size == 1 else size * 2]]
    if size > 1 and len(members) > 1 and len(work.split.valid):
        return _pick_ensemble(members, work, size, device, note)
    return [dataclasses.replace(members[0], weight=1.0)], {}


def _pick_ensemble(members: list[Member], work: Workspace, size: int, device: torch.device, note: Note
                   ) -> tuple[list[Member], dict[str, float]]:
    """Caruana's selection among ``members`` (best by the study's objective first), kept only when the ensemble
    of its ``size`` heaviest picks validates better than ``members[0]``, both measured on the same probabilities.

    The selection ranks by log-loss, so its first pick need not be the study's best trial: the comparison is
    always against ``members[0]``, the trial the study would export alone, and the line names it.
    """
    from automel.ensemble import greedy_ensemble, mixture_accuracy, predict_proba

    started = time.monotonic()
    probas = [predict_proba(_model(m), work.store, work.split.valid, device) for m in members]
    labels = work.store.labels.numpy()[work.split.valid]
    choice = greedy_ensemble(probas, labels)
    picked = sorted(choice.members, key=lambda i: -choice.weights[i])[:size]
    total = sum(float(choice.weights[i]) for i in picked)
    weights = [float(choice.weights[i]) / total if i in picked else 0.0 for i in range(len(members))]
    ensemble_acc = mixture_accuracy(probas, weights, labels)  # the ensemble as exported: its picks only
    best = members[0].trial.number
    single_acc = mixture_accuracy(probas[:1], [1.0], labels)
    scores = {"ensemble_valid_acc": ensemble_acc, "single_valid_acc": single_acc, "single_trial": best,
              "seconds": round(time.monotonic() - started, 3)}
    versus = f"trial {best} (the study's best single trial)"
    if len(picked) > 1 and ensemble_acc > single_acc:
        chosen = [dataclasses.replace(members[i], weight=weights[i]) for i in picked]
        note(f"ensemble of trials {', '.join(str(m.trial.number) for m in chosen)}: valid accuracy "
             f"{ensemble_acc:.2%} vs {single_acc:.2%} for {versus}")
        return chosen, scores
    note(f"no ensemble: it validates at {ensemble_acc:.2%}, no better than {single_acc:.2%} for {versus}, "
         f"which goes alone")
    return [dataclasses.replace(members[0], weight=1.0)], scores


def _ensemble_room(best: FrozenTrial, work: Workspace, options: FinishOptions, deadline: float | None) -> int:
    """How many members the ensemble may have: each one's refit must still be long.

    A refit split between members is shorter for each. Longer training is worth more than averaging
    (the search's short trials gain a lot from it), so a member joins only if every member can still be
    refit for at least half of ``REFIT_LONGER`` times its data-scaled steps.
    """
    if not options.refit or deadline is None or options.steps is not None:
        return options.ensemble_size
    base, _ = refit_plan(best, _data_ratio(work), None)
    affordable = (deadline - time.monotonic()) * _rate(best) * 0.9
    return max(1, min(options.ensemble_size, int(affordable // (base * ENSEMBLE_MEMBER_LONGER))))


def _rate(trial: FrozenTrial) -> float:
    """The trial's training speed in steps per second (without its validations, which a refit skips)."""
    seconds = trial.user_attrs.get("train_seconds", trial.user_attrs.get("seconds"))
    return int(trial.user_attrs.get("steps") or 1) / max(float(seconds or 0.0), 1e-3)


def _model(member: Member) -> torch.nn.Module:
    assert member.model is not None, "candidates are loaded with their weights"
    return member.model


def distinct_best(study: optuna.Study, store: Any) -> list[FrozenTrial]:
    """Completed, feasible trials with kept weights, best first, one per distinct configuration."""
    seen: set[str] = set()
    out = []
    for trial in sorted(feasible_complete(study), key=lambda t: (-(t.value or 0.0), t.number)):
        key = json.dumps(trial.params, sort_keys=True, default=str)
        if key not in seen and has_weights(store, trial):
            seen.add(key)
            out.append(trial)
    return out


def best_reached(study: optuna.Study) -> FrozenTrial:
    """The trial that got furthest (most steps reported), and among those the most accurate."""
    ranked = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
              if t.intermediate_values and is_feasible(t)]
    if not ranked:
        limits = Constraints.of_study(study)
        within = f" within its limits ({limits.describe()})" if limits.active else ""
        raise StudyError(f"study '{study.study_name}' has no trial that trained far enough to refit{within}")
    return max(ranked, key=lambda t: (max(t.intermediate_values), t.intermediate_values[max(t.intermediate_values)],
                                      -t.number))


def _with_weights(member: Member, store: Any) -> Member:
    with tempfile.TemporaryDirectory() as tmp:
        model, record = load_run(download_trial(store, member.trial, Path(tmp)))
    return dataclasses.replace(member, model=model, record=record)


def refit_workspace(work: Workspace) -> Workspace:
    """The same store with every labelled utterance in training and nothing held out."""
    from automel.data.split import Split

    split = work.split
    everything = np.sort(np.concatenate([split.train, split.valid]))
    return Workspace(work.store, Split(everything, np.empty(0, dtype=np.int64), split.seed, split.valid_fraction))


def _data_ratio(work: Workspace) -> float:
    """How much more data a refit trains on than a trial did: (train + valid) / train."""
    return (len(work.split.train) + len(work.split.valid)) / max(len(work.split.train), 1)


def refit_plan(trial: FrozenTrial, data_ratio: float, seconds: float | None, max_seeds: int = 1,
               fixed: int | None = None) -> tuple[int, int]:
    """``(steps, seeds)`` for refitting ``trial`` on ``data_ratio`` times its training data.

    ``fixed`` steps win. Otherwise the base is the trial's steps scaled by the data; with ``seconds`` to
    spend, the run is stretched to fill them (at the trial's measured speed, with a 10 % margin) up to
    ``REFIT_LONGER`` times the base, and time for several such runs buys up to ``max_seeds`` seeds.
    ``steps`` is 0 when the time left cannot even pay for half the base: the trial's own model is better.
    """
    if fixed is not None:
        return fixed, 1
    trained = int(trial.user_attrs.get("steps") or 1)
    base = max(1, math.ceil(trained * data_ratio))
    if seconds is None:
        return base, 1
    affordable = seconds * _rate(trial) * 0.9
    longest = int(base * REFIT_LONGER)
    if affordable < base * 0.5:
        return 0, 0
    if affordable >= 2 * longest:
        return longest, max(1, min(max_seeds, int(affordable // longest)))
    return int(min(longest, affordable)), 1


@dataclass
class Fitted:
    member: Member
    models: list[tuple[torch.nn.Module, RunRecord]]
    curves: list[list[dict[str, Any]]] = field(default_factory=list)  # each refit's log rows (metrics.jsonl)


def _refit_members(members: list[Member], work: Workspace, options: FinishOptions, device: torch.device,
                   deadline: float | None, note: Note) -> list[Fitted]:
    everything = refit_workspace(work)
    ratio = _data_ratio(work)
    fitted = []
    for index, member in enumerate(members):
        share = None if deadline is None else (deadline - time.monotonic()) / (len(members) - index)
        steps, seeds = refit_plan(member.trial, ratio, share, options.refit_seeds if len(members) == 1 else 1,
                                  options.steps)
        if steps == 0 and member.model is not None and member.record is not None:
            note(f"no time left to refit trial {member.trial.number}; its own model is exported")
            fitted.append(Fitted(member, [(member.model, member.record)]))
            continue
        until = deadline
        if steps == 0:  # no time left and no trial weights to fall back on: train briefly, late rather than never
            steps, seeds, until = refit_plan(member.trial, ratio, None)[0] // 2 or 1, 1, None
        runs = [_refit_one(member, everything, steps, k, device, until, note, options.deterministic)
                for k in range(seeds)]
        fitted.append(Fitted(member, [(model, record) for model, record, _ in runs], [curve for *_, curve in runs]))
    return fitted


def _refit_one(member: Member, everything: Workspace, steps: int, seed_index: int, device: torch.device,
               deadline: float | None, note: Note, deterministic: bool = False
               ) -> tuple[torch.nn.Module, RunRecord, list[dict[str, Any]]]:
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


@dataclass
class Part:
    """One exported model: its weights, its config, its entry in ``export.json`` and its log rows."""

    model: torch.nn.Module
    record: RunRecord
    info: dict[str, Any]
    curve: list[dict[str, Any]] = field(default_factory=list)


def _export(study: optuna.Study, work: Workspace, members: list[Member], fitted: list[Fitted] | None,
            out: Path, ensemble: dict[str, float] | None, device: torch.device,
            options: FinishOptions, home: Path) -> FinishResult:
    from automel.engine.export import EXPORT_INFO, model_card
    from automel.exporting import describe, staged_exports

    parts = _parts(members, fitted)
    best = study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else members[0].trial
    kind = "ensemble" if len(parts) > 1 else ("refit" if fitted else "trial")
    described = [p.info for p in parts]
    info: dict[str, Any] = {"study": study.study_name, "trial": best.number, "kind": kind, "value": best.value,
                            "members": described, "ensemble": ensemble}
    model = parts[0].model if len(parts) == 1 else _ensemble_model(parts)
    valid_acc = None
    if kind == "trial":  # the trial's own weights: re-measure what the study recorded, from the files' model
        from automel.train.loop import evaluate

        valid_acc, _ = evaluate(model, work.store, work.split.valid, device, autocast_dtype(device, True))
        info["valid_acc"] = valid_acc
    adaptation, predictor = adapt_export(model, parts[0].record, work.store, options.adapt, home, device)
    if adaptation is not None:
        info[ADAPTATION] = adaptation
        parts = [dataclasses.replace(p, record=dataclasses.replace(
            p.record, extra={**p.record.extra, ADAPTATION: adaptation})) for p in parts]
    rows = test_submission(predictor, work.store, parts[0].record.speakers, device) if work.store.dataset.test else None
    card = model_card(study, members[0].trial, parts[0].record.to_json(), valid_acc, kind=kind, members=described)
    if adaptation is not None:
        from automel.adapt import Adaptation
        from automel.adapt import describe as adapted

        card += f"\n## Adaptation\n\n{adapted(Adaptation(**adaptation))}. `automel predict` adapts again to " \
                f"the data it predicts when it was `test` (see `--adapt`).\n"
    extra = {EXPORT_INFO: json.dumps(info, indent=2, default=str)}
    what = describe(parts[0].record.params) if len(parts) == 1 else f"the ensemble of {len(parts)} models"
    # Deployable files first, into a temporary folder: a model that cannot take a format leaves the old export.
    with staged_exports(model, options.formats, parts[0].record.n_mels, out.resolve().parent, what) as staged:
        if len(parts) == 1:
            path = write_run_dir(out, parts[0].model.state_dict(), parts[0].record, parts[0].curve, rows, card=card,
                                 replace=True, extra=extra)
        else:
            from automel.ensemble import write_ensemble_dir

            path = write_ensemble_dir(out, [(p.model.state_dict(), p.record, p.info) for p in parts],
                                      [p.info["weight"] for p in parts], rows, card=card, replace=True, extra=extra,
                                      result=ensemble, metrics=[p.curve for p in parts])
        staged.install(path)
    return FinishResult(path, kind, described, ensemble, adaptation=adaptation)


def _parts(members: list[Member], fitted: list[Fitted] | None) -> list[Part]:
    """One part per exported model: the refit models (seeds share their member's weight), else the trials'."""
    parts = []
    if fitted is None:
        for m in members:
            if m.model is None or m.record is None:
                raise StudyError(f"trial {m.trial.number}'s weights were not kept; refit it instead")
            parts.append(Part(m.model, m.record, {"trial": m.trial.number, "weight": m.weight, "refit": False}))
        return parts
    for f in fitted:
        curves = f.curves or [[] for _ in f.models]
        for (model, record), curve in zip(f.models, curves, strict=True):
            parts.append(Part(model, record, {"trial": f.member.trial.number, "weight": f.member.weight / len(f.models),
                                              "refit": "refit" in record.extra,
                                              "seed": record.extra.get("refit", {}).get("seed")}, curve))
    return parts


def _ensemble_model(parts: list[Part]) -> torch.nn.Module:
    from automel.ensemble import EnsembleModel

    return EnsembleModel([p.model for p in parts], [p.info["weight"] for p in parts]).eval()
