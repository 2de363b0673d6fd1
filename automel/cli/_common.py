"""What every command shares: the console, the ``--home`` option and error handling.

The library names options as the Python API spells them (`time_limit`); every error, interrupted and note
line printed here shows the CLI's flag instead (``--time-limit``, :mod:`automel.cli._flags`).
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console, ConsoleRenderable, RenderHook
from rich.markup import escape
from rich.text import Text

from automel.cli._flags import as_flags
from automel.errors import AutomelError, ConfigError, DiskError, Fatal, Terminated
from automel.redact import redact
from automel.scratch import process_scratch


class _Redact(RenderHook):
    """Masks URL passwords in every line a console prints (errors, notes, summaries, worker logs): wherever a
    storage URL reaches a message, the password does not (:func:`automel.redact.redact`)."""

    def process_renderables(self, renderables: list[ConsoleRenderable]) -> list[ConsoleRenderable]:
        return [_redacted(r) for r in renderables]


def _redacted(renderable: ConsoleRenderable) -> ConsoleRenderable:
    if isinstance(renderable, Text):
        masked = redact(renderable.plain)
        if masked != renderable.plain:
            return Text(masked, style=renderable.style, end=renderable.end)  # its spans would no longer fit
    return renderable


def _console(stderr: bool = False) -> Console:
    made = Console(stderr=stderr)
    made.push_render_hook(_Redact())
    return made


console = _console()
err_console = _console(stderr=True)

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


def seed_option(help: str) -> Any:
    """The ``--seed`` option of every command: checked (0 to 2**32 - 1, :func:`automel.seeds.check_seed`) as
    it is parsed, so a bad seed is one line before any work."""
    return typer.Option("--seed", help=help, callback=_checked_seed)


def _checked_seed(value: int) -> int:
    from automel.seeds import check_seed

    try:
        return check_seed(value)
    except ConfigError as exc:
        raise fail(str(exc), exc.exit_code) from None


F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C", bound=str)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line to stderr and return the Exit to raise: the CLI's one error printer, where the
    library's parameter names become flags (`time_limit` → ``--time-limit``, :func:`as_flags`)."""
    err_console.print(f"[bold red]error:[/] {escape(as_flags(message))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: F) -> F:
    """Turn library errors into one clear line and the error's exit code.

    A full, read-only or unwritable disk is one line too, wherever it surfaces (an ``OSError``, or one
    behind a storage error); SIGTERM is handled like Ctrl-C (:class:`Terminated`) and, unless the command
    handles it, exits 143. The library's notes (``logging.getLogger("automel")``) go to stderr.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _show_notes()
        _clean_warnings()
        _quiet_disk_faults_in_threads()
        previous = _handle_sigterm()
        try:
            with process_scratch():  # temporary files in a folder of this process, cleared if it is killed
                return func(*args, **kwargs)
        except Terminated:
            raise fail("terminated (SIGTERM)", TERMINATED_EXIT) from None
        except Fatal as exc:
            raise fail(str(exc.error), exc.error.exit_code) from None
        except AutomelError as exc:
            fault = None if isinstance(exc, DiskError) else DiskError.find(exc, _fault_place(kwargs))
            error = fault if fault is not None and fault.kind != DiskError.DENIED else exc
            raise fail(str(error), error.exit_code) from None
        except Exception as exc:
            fault = DiskError.find(exc, _fault_place(kwargs))
            if fault is None:
                raise
            raise fail(str(fault), fault.exit_code) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    return wrapper  # type: ignore[return-value]


INTERRUPTED_EXIT, TERMINATED_EXIT = 130, 143  # 128 + SIGINT, 128 + SIGTERM, as shells report them
_terminated = threading.Event()


def _handle_sigterm() -> Any:
    """Make SIGTERM raise :class:`Terminated` in the main thread; return the handler it replaces."""
    if threading.current_thread() is not threading.main_thread():
        return None
    _terminated.clear()

    def on_sigterm(signum: int, frame: object) -> None:
        if not _terminated.is_set():  # once: a second SIGTERM (the whole group got one) must not cut the cleanup
            _terminated.set()
            raise Terminated()

    return signal.signal(signal.SIGTERM, on_sigterm)


def interrupted_exit(message: str) -> typer.Exit:
    """After Ctrl-C or SIGTERM: print ``message`` and return the Exit to raise (130, or 143 after SIGTERM).

    A second Ctrl-C or SIGTERM then leaves at once: every write is already committed.
    """
    terminated = _terminated.is_set()
    code = TERMINATED_EXIT if terminated else INTERRUPTED_EXIT
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: os._exit(code))
    what = "terminated (SIGTERM)" if terminated else "interrupted"
    err_console.print(f"{what}: {escape(as_flags(message))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def _fault_place(kwargs: dict[str, Any]) -> Path | None:
    """Where a disk fault that names no file happened: the SQLite or journal file of ``--storage``, else the
    home, else an output's folder."""
    storage = kwargs.get("storage")
    if isinstance(storage, str):
        from automel.engine.study import storage_file  # only when a fault is being reported

        held_in = storage_file(storage)
        if held_in is not None:
            return held_in
    if "home" in kwargs:
        from automel.home import ENV_VAR

        return Path(kwargs["home"] or os.environ.get(ENV_VAR) or "studies").expanduser().resolve()
    out = kwargs.get("out")
    return Path(out).resolve().parent if isinstance(out, Path) else None


def _quiet_disk_faults_in_threads() -> None:
    """A background thread (Optuna's heartbeat) that hits a full or read-only disk dies without a traceback:
    the main thread meets the same fault and reports it in one line."""
    if getattr(threading.excepthook, "automel", False):
        return
    default = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or DiskError.find(args.exc_value) is None:
            default(args)

    hook.automel = True  # type: ignore[attr-defined]
    threading.excepthook = hook


class _NoteHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(f"note: {escape(as_flags(record.getMessage()))}", highlight=False, soft_wrap=True)


def _clean_warnings() -> None:
    """Python warnings (Optuna's, matplotlib's, torch's) as one ``warning:`` line each, once, without the
    library's file path and source line; Optuna's notes that a feature automel uses is "experimental" are
    dropped: they are for Optuna's own users, not for automel's."""
    if getattr(warnings.showwarning, "automel", False):
        return
    # Optuna's ExperimentalWarning, matched by its text: importing Optuna here would slow every command.
    warnings.filterwarnings("ignore", message=r".* is experimental \(supported from v")
    # Optuna's note to its own users when a trial is asked for outside Study.optimize (a worker's loop does)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    shown: set[str] = set()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        text = (str(message).strip().splitlines() or [category.__name__])[0]
        if text not in shown:
            shown.add(text)
            err_console.print(f"warning: {text}", markup=False, highlight=False, soft_wrap=True)

    show.automel = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def _show_notes() -> None:
    logger = logging.getLogger("automel")
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        logger.addHandler(_NoteHandler(logging.INFO))
        logger.setLevel(logging.INFO)


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
