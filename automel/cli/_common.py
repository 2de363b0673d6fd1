"""What every command shares: the console, the ``--home`` option and error handling."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from automel.errors import AutomelError, ConfigError

console = Console()
err_console = Console(stderr=True)

HomeOption = Annotated[
    Path | None,
    typer.Option("--home",
        help="automel's home for caches, studies and exports [env: AUTOMEL_HOME; default: ./studies]"),
]
DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="An HW4-layout data set; default: the embedded synthetic corpus."),
]
DeviceOption = Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.")]
DeterministicOption = Annotated[bool, typer.Option(
    "--deterministic", help="Deterministic kernels only (one seed, one result on a GPU too); slower on a GPU.")]

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=str)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line to stderr and return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn library errors into one clear line and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except AutomelError as exc:
            raise fail(str(exc), exc.exit_code) from None

    return wrapper  # type: ignore[return-value]


def choice(option: str, value: str, allowed: Sequence[C]) -> C:
    """``value`` as one of ``allowed``; otherwise a one-line error naming the option."""
    for allowed_value in allowed:
        if allowed_value == value:
            return allowed_value
    raise ConfigError(f"{option} {value!r} is not one of {', '.join(allowed)}")


def resolve_data(data: Path | None, home: Path | None) -> Path:
    """The data set to use: ``--data``, else the embedded synthetic corpus (generated on first use)."""
    if data is not None:
        return data
    from automel.data.synth import default_corpus
    from automel.home import resolve_home

    with console.status("Generating the embedded synthetic corpus (first use only)…"):
        return default_corpus(resolve_home(home))


def warn_plugin_failures() -> None:
    """One line on stderr when external plugins failed to load: the run goes on without them."""
    from automel.registry import default_registry

    failures = default_registry().failures
    if failures:
        names = ", ".join(sorted({f"{f.kind} '{f.name}'" for f in failures}))
        err_console.print(f"[yellow]warning:[/] {len(failures)} plugin(s) failed to load and are left out: "
                          f"{escape(names)} (`automel plugins` says why)", highlight=False, soft_wrap=True)


def quiet_optuna() -> None:
    """Optuna's per-trial INFO lines would scroll the live view away; warnings still show."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
