"""After a search, from Python: refit a study's best configurations, export a trial, list the Pareto front.

``automel refit`` and ``automel export`` call these; every export goes through the one writer,
:mod:`automel.engine.finish.write`, into the study's export folder (``<home>/<study>/best``) unless ``out``
names another.

The rule :func:`export` holds: adding a deployable format never changes a model. Without ``trial``, a refit or
an ensemble in the study's export folder (the result of retraining, minutes to hours of work) is kept and only
gets the new files; a trial's own weights replace it only when ``trial`` asks, and the result says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from automel.api._common import PathLike, check_callback, listed, nothing
from automel.api.studies import open_study

if TYPE_CHECKING:
    import optuna

    from automel.engine.finish import FinishResult
    from automel.engine.finish.write import HeldExport
    from automel.engine.handle import StudyHandle
    from automel.engine.leaderboard import LeaderboardRow

__all__ = ["ExportOutcome", "export", "pareto_front", "refit"]


def refit(study: str | None = None, *, time_limit: str | float | None = None, quality: str = "balanced",
          steps: int | None = None, data: PathLike | None = None, formats: Sequence[str] = (), adapt: str = "test",
          device: str = "auto", storage: str | None = None, home: PathLike | None = None,
          progress: Callable[[str], None] | None = None) -> FinishResult:
    """Refit a finished study's best configuration(s) on all labelled data and export them (``automel refit``).

    ``time_limit`` (seconds, or ``"30m"``) bounds the ensemble choice, the refits and the export; ``quality``
    (``fast``, ``balanced``, ``best``) sets the ensemble size and the seeds; ``steps`` fixes the refit steps
    (default: the trial's, scaled by the added data, stretched to fill the time). ``data`` is the study's data
    set when it moved. ``progress`` hears one line per step. Ctrl-C leaves the study and the previous export.
    """
    from automel.adapt import check_adapt
    from automel.arguments import check_path, check_whole
    from automel.engine.budget import Clock, check_time_limit, parse_duration, quality_named
    from automel.engine.finish import FinishOptions, finish_study
    from automel.exporting import require_formats
    from automel.train.device import select_device

    check_callback(progress, "progress")
    check_whole(steps, "steps", optional=True)
    export_formats = require_formats(listed(formats))  # a bad format fails before the refit, not after it
    check_adapt(adapt)
    chosen = quality_named(quality)
    deadline = None
    if time_limit is not None:
        limit_s = parse_duration(time_limit)
        check_time_limit(limit_s)
        deadline = Clock(limit_s, chosen).finish_deadline()
    handle, loaded = open_study(study, home, storage)
    options = FinishOptions(ensemble_size=chosen.ensemble_size, refit_seeds=chosen.refit_seeds, steps=steps,
                            formats=export_formats, adapt=adapt)
    return finish_study(handle, loaded, options, select_device(device), deadline=deadline,
                        data_root=check_path(data, "data", optional=True), note=progress or nothing)


@dataclass(frozen=True)
class ExportOutcome:
    """What :func:`export` did.

    ``action``: ``exported`` (a trial's weights written), ``added`` (deployable files added to the export the
    folder held, whose model is unchanged) or ``kept`` (the folder holds a refit or an ensemble, which a
    trial's own weights would replace; nothing written). ``replaced`` describes the retrained export that an
    explicit ``trial`` replaced.
    """

    path: Path
    action: str
    kind: str
    trial: int
    valid_acc: float | None = None
    held: str | None = None  # what the folder held (kept, or given the new files)
    replaced: str | None = None
    added: dict[str, Path] = field(default_factory=dict)


def export(study: str | None = None, trial: int | None = None, *, out: PathLike | None = None,
           formats: Sequence[str] = (), adapt: str = "test", pareto: bool = False, data: PathLike | None = None,
           storage: str | None = None, home: PathLike | None = None) -> ExportOutcome:
    """Export trial ``trial`` (default: the best) of a study to ``out`` (default: the study's export folder),
    with its card, its submission and the deployable ``formats`` (``automel export``).

    ``pareto`` requires the trial to be on the accuracy × size Pareto front. Without ``trial``, a refit or an
    ensemble the export folder holds is kept (see the module's rule); with ``formats`` it only gets the files.
    """
    from automel.adapt import check_adapt
    from automel.arguments import check_flag, check_path, check_whole
    from automel.engine.finish.select import pick_trial
    from automel.engine.finish.write import export_trial, held_export
    from automel.exporting import require_formats
    from automel.outputs import check_output_folder

    check_whole(trial, "trial", least=0, optional=True)
    chosen_formats = require_formats(listed(formats))  # an unknown format or a missing extra fails before any work
    check_adapt(adapt)
    check_flag(pareto, "pareto")
    target = check_path(out, "out", optional=True)
    root = check_path(data, "data", optional=True)
    if target is not None:
        check_output_folder(target, "out")  # a file in the way fails before the study is read
    handle, loaded = open_study(study, home, storage)
    if pareto:
        _on_front(loaded, trial)
    if target is not None:
        check_output_folder(target, "out", inside=handle.reads(loaded, root, whole_folder=False))
        chosen = pick_trial(loaded, trial)
        written = export_trial(handle, loaded, chosen, target, replace=False, data_root=root, formats=chosen_formats,
                               adapt=adapt)
        return ExportOutcome(written.path, "exported", "trial", chosen.number, written.valid_acc)
    held = held_export(handle.best)
    if trial is None and held is not None:
        kept = _keep_held(handle, loaded, held, chosen_formats)
        if kept is not None:
            return kept
    chosen = pick_trial(loaded, trial)
    written = export_trial(handle, loaded, chosen, data_root=root, formats=chosen_formats, adapt=adapt)
    replaced = held.describe() if held is not None and held.retrained else None
    return ExportOutcome(written.path, "exported", "trial", chosen.number, written.valid_acc, replaced=replaced)


def _keep_held(handle: StudyHandle, study: optuna.Study, held: HeldExport, formats: tuple[str, ...]
               ) -> ExportOutcome | None:
    """Without ``trial``: keep what the export folder holds when it is a refit or an ensemble, or already the
    best trial; ``formats`` then only adds the deployable files. None when the best trial is to be exported."""
    from automel.engine.finish.select import pick_trial
    from automel.engine.finish.write import add_formats
    from automel.exporting import FORMATS
    from automel.outputs import check_output_file

    if not held.retrained and held.trial != pick_trial(study, None).number:
        return None  # a trial export that is no longer the best: export the best, as asked
    if formats:
        for fmt in formats:
            check_output_file(handle.best / FORMATS[fmt], "formats")  # a folder in the way, before any tracing
        added = add_formats(handle.best, formats)
        return ExportOutcome(handle.best, "added", held.kind, held.trial, held=held.describe(), added=added)
    if not held.retrained:
        return None  # the best trial again: exporting it afresh loses nothing
    return ExportOutcome(handle.best, "kept", held.kind, held.trial, held=held.describe())


def pareto_front(study: str | None = None, *, storage: str | None = None, home: PathLike | None = None
                 ) -> list[LeaderboardRow]:
    """The study's accuracy × size Pareto front, most accurate first (``automel export --pareto``)."""
    _, loaded = open_study(study, home, storage)
    return _on_front(loaded, None)


def _on_front(study: optuna.Study, trial: int | None) -> list[LeaderboardRow]:
    """The front; :class:`StudyError` if it is empty or ``trial`` is not on it."""
    from automel.engine.leaderboard import front_rows
    from automel.errors import StudyError

    front = front_rows(study)
    if not front:
        raise StudyError(f"study '{study.study_name}' has no completed trial with a recorded size: no Pareto front")
    if trial is not None and trial not in {row.trial for row in front}:
        raise StudyError(f"trial {trial} is not on the Pareto front of study '{study.study_name}' (its trials: "
                         f"{', '.join(str(row.trial) for row in front)})")
    return front
