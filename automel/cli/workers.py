"""``automel worker``: join a study beside other workers (``search --workers N`` starts them: automel.engine.job)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from automel.cli._common import (
    DeviceOption,
    HomeOption,
    console,
    handle_errors,
    interrupted_exit,
    quiet_optuna,
    warn_plugin_failures,
)

if TYPE_CHECKING:
    import optuna

    from automel.engine.handle import StudyHandle


def register(app: typer.Typer) -> None:
    app.command("worker")(handle_errors(worker))


def worker(
    study: Annotated[str, typer.Option("--study", help="The study to join (created by `automel search`).")],
    storage: Annotated[str | None, typer.Option("--storage",
        help="SQLAlchemy URL or journal:PATH [default: sqlite:///<home>/<study>.db].")] = None,
    device: DeviceOption = "auto",
    trials: Annotated[int | None, typer.Option("--trials", min=1,
        help="Stop after finishing this many trials [default: until the study holds its target].")] = None,
    data: Annotated[Path | None, typer.Option("--data",
        help="This machine's copy of the study's data set, if it lies elsewhere.")] = None,
    timeout: Annotated[float | None, typer.Option(min=1,
        help="Stop after this many seconds; a trial still training then is cut (pruned).")] = None,
    export: Annotated[bool, typer.Option("--export/--no-export",
        help="Export the best trial if this worker finishes the study.")] = True,
    worker_index: Annotated[int | None, typer.Option(hidden=True, help="Set by `search --workers`.")] = None,
    grace_period: Annotated[int, typer.Option(min=2, hidden=True,
        help="Seconds before a silent RUNNING trial is failed.")] = 60,
    home: HomeOption = None,
) -> None:
    """Join an existing study and run its trials beside other workers (on this or other machines)."""
    from automel.api.progress import TrialProgress
    from automel.engine.handle import StudyHandle
    from automel.engine.parallel import STORAGE_ENV
    from automel.engine.search import SearchEvents, run_trials
    from automel.engine.worker import open_worker, study_is_done
    from automel.home import resolve_home
    from automel.redact import redact

    where = resolve_home(home)
    # from `search --workers`: the storage URL is kept off the command line
    handle = StudyHandle(where, study, storage or os.environ.pop(STORAGE_ENV, None))
    if not handle.exists():
        from automel.errors import StudyError

        raise StudyError(f"no study '{study}' in {where}; pass --storage URL for a shared study")
    url = handle.url
    quiet_optuna()
    warn_plugin_failures()
    opened, options = open_worker(where, study, url, data, device, trials, grace_period, worker_index, timeout)
    console.print(f"worker {os.getpid()} joined study [bold]{study}[/] ({escape(redact(url))}) on {device}: target "
                  f"{options.trials} finished trials", highlight=False, soft_wrap=True)
    lines = TrialProgress(options.trials, _say)  # one plain line per trial this worker finishes: a log
    outcome = run_trials(opened, where, options, SearchEvents(on_trial_end=lines.finished))
    counts = outcome.counts
    console.print(f"worker {os.getpid()} done: {outcome.finished_here} trials finished here; study holds "
                  f"{counts['finished']}/{options.trials} ({counts['complete']} complete, {counts['pruned']} pruned, "
                  f"{counts['fail']} failed)", highlight=False, soft_wrap=True)
    if outcome.interrupted:
        raise interrupted_exit("the study is consistent; run the same command to rejoin it")
    if export and counts["complete"] and study_is_done(outcome.study, options.trials):
        _export(handle, outcome.study, data)


def _say(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def _export(handle: StudyHandle, study: optuna.Study, data: Path | None) -> None:
    from automel.engine.finish.write import export_best

    written, best = export_best(handle, study, data)
    verb, path = ("exported to", written.path) if written is not None else ("already exported in", handle.best)
    console.print(f"best trial {best.number}: valid accuracy {best.value:.2%} → {verb} {path}", highlight=False,
                  soft_wrap=True)
