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
    from automel.engine.runner import load_study
    from automel.home import resolve_home
    from automel.report import check_out, write_report
    from automel.train.device import select_device

    target = check_out(out)  # a missing folder fails before the study is read
    where = resolve_home(home)
    quiet_optuna()
    written = write_report(load_study(where, study, storage), where, target, data_root=data,
                           device=select_device(device))
    console.print(f"wrote {written.html} with {len(written.figures)} plots, and their PNGs beside it",
                  highlight=False, soft_wrap=True)
    for note in written.notes:
        console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
