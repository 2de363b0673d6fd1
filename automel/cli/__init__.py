"""The ``automel`` command: a thin Typer layer over the library.

Heavy modules (torch, optuna) are imported inside commands so that ``automel --help`` stays fast.
"""

from __future__ import annotations

import typer

from automel.cli import data as data_cli
from automel.cli import inference as inference_cli
from automel.cli import models as models_cli
from automel.cli import plugins as plugins_cli
from automel.cli import report as report_cli
from automel.cli import search as search_cli
from automel.cli import workers as workers_cli

app = typer.Typer(
    name="automel",
    help="Find the best speaker-classification model for a data set of log-mel spectrograms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_cli.app, name="data")
models_cli.register(app)
inference_cli.register(app)
search_cli.register(app)
plugins_cli.register(app)
workers_cli.register(app)
report_cli.register(app)


def main() -> None:
    app()
