"""``automel report``: a study's plots in one HTML page that works offline, with a PNG of each beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from automel.cli._common import DeviceOption, HomeOption, console, handle_errors, quiet_optuna
from automel.cli.search import StorageOption, StudyOption


def register(app: typer.Typer) -> None:
    app.command("report")(handle_errors(report))


def report(
    out: Annotated[Path, typer.Option("--out",
        help="The HTML file to write; each plot also goes beside it as <name>-<plot>.png.")],
    study: StudyOption = None,
    storage: StorageOption = None,
    data: Annotated[Path | None, typer.Option(help="The study's data set, if it moved.")] = None,
    device: DeviceOption = "auto",
    home: HomeOption = None,
) -> None:
    """An HTML report of a study: history, importances, accuracy by plugin, curves and the export's errors."""
    from automel.api import report as write_report

    quiet_optuna()
    written = write_report(study, out, home=home, storage=storage, data=data, device=device)
    console.print(f"wrote {written.html} with {len(written.figures)} plots, and their PNGs beside it",
                  highlight=False, soft_wrap=True)
    for note in written.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
