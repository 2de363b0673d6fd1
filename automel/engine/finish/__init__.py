"""After the search: choose, refit, write (AutoGluon's recipe), one module per step.

1. :mod:`.select`: the best trial alone, or the greedy ensemble of the best distinct trials when it
   validates better;
2. :mod:`.refit`: each chosen configuration trained again on all labelled data, for as long as the time
   left allows;
3. :mod:`.write`: the export, written whole or not at all, by the only code that writes ``<study>/best``.

:func:`finish_study` runs the three; ``automel refit``, the end of ``automel search`` and the API call it.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import TrialState

from automel.engine.constraints import Constraints
from automel.engine.finish.parts import Note, parts_of
from automel.engine.finish.refit import refit_members
from automel.engine.finish.select import choose_members
from automel.engine.finish.write import write_export
from automel.engine.handle import StudyHandle

__all__ = ["FinishOptions", "FinishResult", "Note", "finish_study"]


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
class FinishResult:
    path: Path
    kind: str  # "trial", "refit" or "ensemble"
    members: list[dict[str, Any]] = field(default_factory=list)
    ensemble: dict[str, float] | None = None  # validation accuracy of the ensemble vs the best single trial
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase: ensemble, refit, export
    adaptation: dict[str, Any] | None = None  # what the export's statistics were adapted to (automel.adapt)


def finish_study(handle: StudyHandle, study: optuna.Study, options: FinishOptions, device: torch.device, *,
                 deadline: float | None = None, data_root: Path | None = None, note: Note = lambda _: None,
                 out: Path | None = None) -> FinishResult:
    """Choose, refit and export study ``study``'s best configurations to ``out`` (default: its export folder)
    within the monotonic ``deadline``."""
    limits = Constraints.of_study(study)
    if limits.active and (options.ensemble_size > 1 or options.refit_seeds > 1):
        note(f"one model, no ensemble or seed average: the study's limits ({limits.describe()}) are per model")
        options = dataclasses.replace(options, ensemble_size=1, refit_seeds=1)
    _say_what_still_runs(study, note)
    work = handle.workspace(study, data_root)
    marks = [time.monotonic()]
    members, scores = choose_members(handle, study, work, ensemble_size=options.ensemble_size, refit=options.refit,
                                     fixed_steps=options.steps, device=device, note=note, deadline=deadline)
    marks.append(time.monotonic())
    fitted = refit_members(members, work, seeds=options.refit_seeds, fixed_steps=options.steps,
                           deterministic=options.deterministic, device=device, deadline=deadline,
                           note=note) if options.refit else None
    marks.append(time.monotonic())
    parts = parts_of(members, fitted)
    kind = "ensemble" if len(parts) > 1 else ("refit" if fitted else "trial")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    ensemble = {"single_valid_acc": members[0].trial.value or 0.0, **scores} if len(members) > 1 else None
    written = write_export(handle, study, work, parts, kind=kind, source=members[0].trial,
                           named=study.best_trial if complete else members[0].trial, ensemble=ensemble, out=out,
                           device=device, formats=options.formats, adapt=options.adapt)
    if written.adaptation is not None:
        from automel.adapt import Adaptation, describe

        note(describe(Adaptation(**written.adaptation)))  # what the submission was adapted to, or why not
    marks.append(time.monotonic())
    phases = zip(("ensemble", "refit", "export"), marks[:-1], marks[1:], strict=True)
    return FinishResult(written.path, kind, written.members, ensemble, {p: round(b - a, 3) for p, a, b in phases},
                        written.adaptation)


def _say_what_still_runs(study: optuna.Study, note: Note) -> None:
    """A refit started while another process still runs trials on the study uses what is finished now."""
    running = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
    if running:
        finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        note(f"trial{'s' if len(running) > 1 else ''} {', '.join(map(str, running))} of study "
             f"'{study.study_name}' {'are' if len(running) > 1 else 'is'} still running (a search or worker is on "
             f"it, or one was killed): this uses the {finished} complete trials there are now; run it again when "
             f"the search ends")
