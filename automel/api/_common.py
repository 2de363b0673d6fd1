"""What the API's modules share: path arguments, quiet Optuna, lists of names, a do-nothing callback."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

PathLike = str | Path


@contextlib.contextmanager
def optuna_warnings_only() -> Iterator[None]:
    """Optuna's INFO line per trial repeats the progress lines; its verbosity is restored afterwards."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def listed(names: Sequence[str] | None) -> list[str] | None:
    return [names] if isinstance(names, str) else (list(names) if names else None)


def nothing(*args: Any) -> None:
    """A callback that ignores what it is told."""


def check_callback(value: object, name: str) -> None:
    """:class:`~automel.errors.ConfigError` unless ``value`` is None or callable (a ``progress`` line sink)."""
    from automel.errors import ConfigError, option_named

    if value is not None and not callable(value):
        raise ConfigError(f"{option_named(name)} must be a function taking one line of text, or None")
