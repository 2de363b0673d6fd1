"""The ``automel`` command: a thin Typer layer over the library.

Heavy modules (torch, optuna) are imported inside commands so that ``automel --help`` stays fast.

Help text is plain text: what a help string or docstring says is what ``--help`` prints. Typer would read
it as Rich markup, where ``[a-z]`` in a regex example or ``[default: ...]`` is a tag and vanishes; every
command and group is built by :class:`LiteralHelpCommand` / :class:`LiteralHelpGroup`, which escape it.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperCommand, TyperGroup

from automel.cli import data as data_cli
from automel.cli import inference as inference_cli
from automel.cli import models as models_cli
from automel.cli import plugins as plugins_cli
from automel.cli import report as report_cli
from automel.cli import search as search_cli
from automel.cli import workers as workers_cli


def _escape_help(command: Any) -> None:
    """Escape the Rich markup in ``command``'s own help and in its parameters' help, once, as it is built."""
    for attr in ("help", "short_help", "epilog"):
        text = getattr(command, attr, None)
        if isinstance(text, str):
            setattr(command, attr, escape(text))
    for param in command.params:
        text = getattr(param, "help", None)
        if isinstance(text, str):
            param.help = escape(text)


class LiteralHelpCommand(TyperCommand):
    """A command whose help prints literally (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _escape_help(self)


class LiteralHelpGroup(TyperGroup):
    """A group whose help prints literally (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _escape_help(self)


app = typer.Typer(
    name="automel",
    help="Find the best speaker-classification model for a data set of log-mel spectrograms.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=LiteralHelpGroup,
)
app.add_typer(data_cli.app, name="data", cls=LiteralHelpGroup)
models_cli.register(app)
inference_cli.register(app)
search_cli.register(app)
plugins_cli.register(app)
workers_cli.register(app)
report_cli.register(app)
for _typer in (app, data_cli.app):  # every command, whoever registered it
    for _info in _typer.registered_commands:
        if _info.cls in (None, TyperCommand):  # Typer fills in its default class at registration
            _info.cls = LiteralHelpCommand


def main() -> None:
    from automel.cli._memory import fix_mmap_threshold

    fix_mmap_threshold()  # the command's own process only (see automel.cli._memory)
    app()
