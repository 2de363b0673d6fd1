"""The parts of ``automel export`` beside the command itself: the Pareto front's table and ``--model``.

What an export keeps or replaces is the API's (:mod:`automel.api.exports`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from automel.cli._common import console
from automel.cli._output import print_table
from automel.outputs import check_output_file, check_output_folder

if TYPE_CHECKING:

    from automel.engine.leaderboard import LeaderboardRow


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
