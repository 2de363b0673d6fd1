"""Checks of public arguments, shared by the Python API and the CLI: one :class:`ConfigError` naming the
parameter, its valid range and the value given, before any work starts.

Python does not check annotations, so ``automel.search(max_params=1.5)`` or ``seed=-1`` would otherwise
reach NumPy, Optuna or a study record (where a bad value is frozen for good) and fail late with their own
exception. Messages name parameters as the API spells them, in backticks (`` `seed` ``, `` `time_limit` ``:
:func:`automel.errors.option_named`); the CLI prints them as its flags (:mod:`automel.cli._flags`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from automel.errors import ConfigError, option_named
from automel.seeds import SEED_MAX
from automel.seeds import check_seed as _check_seed

__all__ = ["MAX_SEED", "check_flag", "check_names", "check_number", "check_path", "check_search_arguments",
           "check_seed", "check_text", "check_whole"]

MAX_SEED = SEED_MAX  # NumPy's and Optuna's seeds are 32-bit unsigned


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` as a whole number in ``0 .. 2**32 - 1``: :func:`automel.seeds.check_seed`, the one check that
    the CLI's ``--seed`` options use too, named as the API spells the parameter."""
    return _check_seed(seed, name)


def check_whole(value: object, name: str, least: int = 1, most: int | None = None,
                optional: bool = False) -> int | None:
    """A whole number (not a bool, not ``1.5``) of at least ``least`` (and at most ``most``); None if optional."""
    if value is None and optional:
        return None
    too_big = most is not None and isinstance(value, int) and value > most
    if isinstance(value, bool) or not isinstance(value, int) or value < least or too_big:
        upper = f" and at most {most}" if most is not None else ""
        raise ConfigError(f"{option_named(name)} must be a whole number of at least {least}{upper}, "
                          f"got {_show(value)}")
    return value


def check_number(value: object, name: str, positive: bool = True, optional: bool = False) -> float | None:
    """A finite real number (int or float, not a bool), above 0 when ``positive``; None if optional."""
    if value is None and optional:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (positive and value <= 0):  # type: ignore[operator]
        raise ConfigError(f"{option_named(name)} must be a finite {'positive ' if positive else ''}number, "
                          f"got {_show(value)}")
    return float(value)  # type: ignore[arg-type]


def check_flag(value: object, name: str) -> bool:
    """``True`` or ``False`` (``"no"`` is a non-empty string, hence true: refused rather than guessed)."""
    if not isinstance(value, bool):
        raise ConfigError(f"{option_named(name)} must be True or False, got {_show(value)}")
    return value


def check_text(value: object, name: str, optional: bool = False) -> str | None:
    """A non-empty string; None if optional."""
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{option_named(name)} must be a non-empty string, got {_show(value)}")
    return value


def check_names(value: object, name: str) -> list[str] | None:
    """None, one name, or a list/tuple of names (each a non-empty string)."""
    if value is None:
        return None
    if isinstance(value, str):
        return [check_text(value, name) or value]
    if not isinstance(value, Sequence):
        raise ConfigError(f"{option_named(name)} must be a name or a list of names, got {_show(value)}")
    return [check_text(item, f"{name}[{i}]") or "" for i, item in enumerate(value)]


def check_path(value: object, name: str, optional: bool = False) -> Path | None:
    """A path (``str`` or ``os.PathLike``), not empty; None if optional."""
    if value is None and optional:
        return None
    if isinstance(value, str) and value.strip():
        return Path(value)
    if isinstance(value, os.PathLike):
        text = os.fspath(value)
        if isinstance(text, str) and text:
            return Path(text)
    raise ConfigError(f"{option_named(name)} must be a path (a str or pathlib.Path), got {_show(value)}")


def check_search_arguments(given: dict[str, Any]) -> None:
    """:class:`ConfigError` naming the first argument of :func:`search` of the wrong type or out of range:
    a value Python lets through (``max_params=1.5``, ``seed=-1``) must not reach a study, where it is frozen."""
    for name in ("data", "home", "noise", "rir"):
        check_path(given[name], name, optional=True)
    check_whole(given["trials"], "trials")
    check_whole(given["keep"], "keep")
    check_whole(given["workers"], "workers")
    check_whole(given["steps_per_trial"], "steps_per_trial", least=10, optional=True)
    check_whole(given["grace_period"], "grace_period", optional=True)
    check_whole(given["max_params"], "max_params", optional=True)
    check_number(given["max_latency_ms"], "max_latency_ms", optional=True)
    check_seed(given["seed"], "seed")
    for name in ("refit", "portfolio", "deterministic", "create_dirs"):
        check_flag(given[name], name)
    for name in ("quality", "sampler", "pruner", "device", "adapt"):
        check_text(given[name], name)
    for name in ("study", "storage", "objective"):
        check_text(given[name], name, optional=True)
    for name in ("encoders", "poolings", "heads"):
        check_names(given[name], name)
    check_names(given["formats"], "formats")
    time_limit = given["time_limit"]
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, str | int | float)):
        raise ConfigError(f"`time_limit` must be a duration ('90s', '30m', '2h') or seconds, got {time_limit!r}")
    for name in ("progress",):
        if given[name] is not None and not callable(given[name]):
            raise ConfigError(f"{option_named(name)} must be a function taking one line of text, or None")


def _show(value: object) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return text if isinstance(value, int | float | str | type(None)) else f"{text} ({type(value).__name__})"
