"""The parts of ``automel export`` beside the command itself: what it keeps, the Pareto front, ``--model``.

The rule they hold: adding a deployable format never changes a model. Without ``--trial``, a refit or an
ensemble in the study's export folder (the result of retraining, minutes to hours of work) is kept and only
gets the new files; a trial's own weights replace it only when ``--trial N`` asks, and the command says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from automel.cli._common import console
from automel.cli._output import print_table
from automel.outputs import Inside, check_output_file, check_output_folder

if TYPE_CHECKING:
    import optuna

    from automel.engine.export import HeldExport
    from automel.engine.leaderboard import LeaderboardRow


def keep_held(study: optuna.Study, held: HeldExport, folder: Path, formats: tuple[str, ...]) -> bool:
    """Without ``--trial``: keep what the study's export folder holds when it is a refit or an ensemble (the
    result of retraining, which a trial's own weights must never replace unasked) or already the best trial.
    ``--format`` then only adds the deployable files. True when that settled the command."""
    from automel.engine.export import add_formats, pick_trial
    from automel.exporting import FORMATS

    if not held.retrained and held.trial != pick_trial(study, None).number:
        return False  # a trial export that is no longer the best: export the best, as asked
    if formats:
        for fmt in formats:
            check_output_file(folder / FORMATS[fmt], "--format")  # a folder in the way, before any tracing
        written = add_formats(folder, formats)
        console.print(f"added {', '.join(p.name for p in written.values())} to {held.describe()} in {folder}; "
                      "its model is unchanged", highlight=False, soft_wrap=True)
        return True
    if not held.retrained:
        return False  # the best trial again: exporting it afresh loses nothing
    console.print(f"{folder} already holds {held.describe()}, which a trial's own weights would replace: nothing "
                  f"to do. Add deployable files with --format, or replace it with --trial N", highlight=False,
                  soft_wrap=True)
    return True


def study_reads(study: optuna.Study, home: Path, data: Path | None) -> list[Inside]:
    """Folders an export of ``study`` reads, which an ``--out`` may not lie in: its data set, its trials' weights."""
    from automel.engine.study import artifact_dir

    reads: list[Inside] = [(f"the trial weights of study '{study.study_name}'", artifact_dir(home, study.study_name))]
    dataset = study.user_attrs.get("dataset")
    root = data or (dataset.get("root") if isinstance(dataset, dict) else None)
    return [*reads, ("the data set", Path(root))] if root else reads


def pareto_front(study: optuna.Study, trial: int | None) -> list[LeaderboardRow]:
    """The study's accuracy × size front; :class:`StudyError` if it is empty or ``trial`` is not on it."""
    from automel.engine.leaderboard import front_rows
    from automel.errors import StudyError

    front = front_rows(study)
    if not front:
        raise StudyError(f"study '{study.study_name}' has no completed trial with a recorded size: no Pareto front")
    if trial is not None and trial not in {row.trial for row in front}:
        raise StudyError(f"trial {trial} is not on the Pareto front of study '{study.study_name}' (its trials: "
                         f"{', '.join(str(row.trial) for row in front)})")
    return front


def print_front(front: list[LeaderboardRow]) -> None:
    from rich.table import Table

    from automel.engine.leaderboard import format_size

    table = Table(title="Pareto front: accuracy × size (export one with --trial N)", title_justify="left")
    for column in ("trial", "encoder", "pooling", "head", "valid acc", "params", "ms/3 s"):
        table.add_column(column)
    for row in front:
        table.add_row(str(row.trial), row.encoder, row.pooling, row.head, f"{row.valid_acc:.2%}",
                      format_size(row.n_params), "" if row.latency_ms is None else f"{row.latency_ms:.1f}")
    print_table(table)


def export_folder(folder: Path, out: Path | None, formats: tuple[str, ...], given_study: bool) -> None:
    """``automel export --model DIR --format F``: deployable files of a run directory or export folder."""
    from automel.errors import ConfigError
    from automel.exporting import FORMATS, describe, export_model
    from automel.model_folder import load_run

    if given_study:
        raise ConfigError("--model exports a folder, --study/--trial a study's trial: give one or the other")
    if not formats:
        raise ConfigError("--model needs --format onnx and/or torchscript (the folder already holds the weights)")
    into = check_output_folder(out, "--out") if out is not None else folder
    if into.is_dir():  # each file must be a file to replace, not a folder in the way (checked before the tracing)
        for fmt in formats:
            check_output_file(into / FORMATS[fmt], "--out" if out is not None else "--model")
    loaded, record = load_run(folder)
    written = export_model(loaded, into, formats, record.n_mels, what=f"{folder} ({describe(record.params)})")
    console.print(f"exported {', '.join(str(p) for p in written.values())}", highlight=False, soft_wrap=True)
