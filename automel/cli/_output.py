"""How listing commands print: a Rich table for people, JSON or CSV for scripts (``--format``).

On a terminal a table fits the window. Anywhere else (a pipe, a log file, a CI job) it is printed at its
natural width, however wide, so that no value is cut to fit 80 columns. JSON and CSV go straight to
stdout, with nothing else on it: every value whole, numbers as numbers.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

import typer
from rich.console import Console, RenderableType
from rich.measure import Measurement

from automel.cli._common import choice, console

Format = Literal["table", "json", "csv"]
FORMATS: tuple[Format, ...] = ("table", "json", "csv")
FormatOption = Annotated[str, typer.Option(
    "--format", help="table | json | csv: json and csv print every value whole, for scripts.")]

UNBOUNDED = 100_000  # columns offered to a table to measure its natural width


def output_format(value: str) -> Format:
    """``--format``'s value; anything else is the usual one-line error."""
    return choice("--format", value, FORMATS)


def print_table(renderable: RenderableType, target: Console = console) -> None:
    """Print a table: to fit a terminal, or, off a terminal, at its natural width so no cell is cut."""
    if target.is_terminal:
        target.print(renderable)
        return
    natural = Measurement.get(target, target.options.update_width(UNBOUNDED), renderable).maximum
    Console(file=target.file, width=max(target.width, natural), stderr=target.stderr).print(renderable)


def print_json(document: Any, target: Console = console) -> None:
    """One JSON document on ``target``'s stream (not through Rich: no wrapping, no markup)."""
    target.file.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    target.file.flush()


def print_csv(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
              target: Console = console) -> None:
    """A header row, then one row per record; ``columns`` default to the records' keys in first-seen order.
    None is an empty cell."""
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(target.file, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    target.file.flush()
