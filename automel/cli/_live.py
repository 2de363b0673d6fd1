"""What a search shows while it runs.

On a terminal, a live view: trial progress, the running trial, counts and a leaderboard. Anywhere else (a pipe,
``nohup``, a CI or Slurm log) a redrawn view shows nothing until the end, so a search prints plain lines
instead: one when it starts, one per finished trial, one when it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import optuna
from optuna.trial import FrozenTrial
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from automel.api.progress import TrialProgress
from automel.cli._progress import add_training_task, progress_hook, training_progress
from automel.engine.leaderboard import LeaderboardRow, format_size, leaderboard_rows
from automel.engine.search import SearchEvents, state_counts


def leaderboard(study: optuna.Study, top: int = 5) -> Table:
    """The best ``top`` trials as a table; ``*`` marks the accuracy × size Pareto front (see ``export --pareto``)."""
    return leaderboard_table(leaderboard_rows(study, top))


def leaderboard_table(rows: Sequence[LeaderboardRow]) -> Table:
    """Leaderboard rows (:func:`automel.api.show`'s ``leaderboard``, for one) as the table ``search`` and
    ``show`` print."""
    sized = any(row.n_params is not None for row in rows)
    timed = any(row.latency_ms is not None for row in rows)
    robust = any(row.valid_acc_shifted is not None for row in rows)  # objective robust: the value is the mean
    table = Table(title="Leaderboard", title_justify="left")
    columns = ["#", "encoder", "pooling", "head", "key parameters", "valid acc"]
    columns += ["clean", "shifted"] if robust else []
    columns += ["steps", "time"]
    columns += ["params", "pareto"] if sized else []
    columns += ["ms/3 s"] if timed else []
    for column in columns:
        table.add_column(column)
    for row in rows:
        cells = [str(row.trial), row.encoder, row.pooling, row.head, row.key_params(), f"{row.valid_acc:.2%}"]
        cells += [_percent(row.valid_acc_clean), _percent(row.valid_acc_shifted)] if robust else []
        cells += [str(row.steps if row.steps is not None else ""), f"{row.seconds or 0:.0f} s"]
        cells += [format_size(row.n_params), "*" if row.pareto else ""] if sized else []
        cells += [f"{row.latency_ms:.1f}" if row.latency_ms is not None else ""] if timed else []
        table.add_row(*cells)
    return table


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value:.2%}"


class LiveView:
    """Builds the :class:`SearchEvents` that keep a Rich ``Live`` display current."""

    def __init__(self, trials: int, console: Any) -> None:
        self.trials_bar = Progress(TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(),
                                   TextColumn("{task.fields[counts]}"), TimeElapsedColumn())
        self.trials_task = self.trials_bar.add_task("trials", total=trials, counts="")
        self.trial_bar = training_progress()
        self.trial_task: TaskID | None = None
        self.steps = 1
        self.board = Table()
        # transient: once done, the view gives way to the search's report (its leaderboard is printed once)
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=True)

    def _render(self) -> Group:
        return Group(self.trials_bar, self.trial_bar, self.board)

    def refresh(self, study: optuna.Study) -> None:
        """Redraw the counts and the leaderboard from the study (what other workers did shows too)."""
        counts = state_counts(study)
        running = f"  running {counts['running']}" if counts["running"] else ""
        self.trials_bar.update(self.trials_task, completed=counts["finished"],
                               counts=f"complete {counts['complete']}  pruned {counts['pruned']}  "
                                      f"failed {counts['fail']}{running}")
        self.board = leaderboard(study)
        self.live.update(self._render())

    def events(self) -> SearchEvents:
        def on_start(study: optuna.Study, steps: int) -> None:
            self.steps = steps
            self.refresh(study)

        def on_trial_start(number: int, params: dict[str, Any]) -> None:
            if self.trial_task is not None:
                self.trial_bar.remove_task(self.trial_task)
            label = f"trial {number}: {params['encoder']}/{params['pooling']}/{params['head']}"
            self.trial_task = add_training_task(self.trial_bar, label, self.steps)
            self.hook = progress_hook(self.trial_bar, self.trial_task)

        def on_progress(step: int, metrics: dict[str, float]) -> None:
            self.hook(step, metrics)

        def on_trial_end(study: optuna.Study, trial: FrozenTrial) -> None:
            self.refresh(study)

        return SearchEvents(on_start, on_trial_start, on_progress, on_trial_end)


def interactive() -> bool:
    """Whether a search draws the live view: stdout and stderr are both terminals."""
    from automel.cli._common import console, err_console

    return console.is_terminal and err_console.is_terminal


def say_plain(line: str) -> None:
    """A progress line for a log (search started, refit done, …); a terminal has the live view instead."""
    from automel.cli._common import console

    if not interactive():
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def search_view(trials: int, elapsed: Callable[[], float] | None = None) -> LiveView | PlainView:
    """The live view on a terminal, else plain lines on stdout; ``elapsed`` is the job's clock."""
    from automel.cli._common import console, err_console

    if interactive():
        return LiveView(trials, err_console)
    started = time.monotonic()
    return PlainView(trials, console, elapsed or (lambda: time.monotonic() - started))


class PlainView:
    """The search as plain lines, for a log that nobody watches redraw; used like :class:`LiveView`. One line
    per finished trial, this process's or another worker's (:class:`automel.api.progress.TrialProgress`)."""

    def __init__(self, trials: int, console: Console, elapsed: Callable[[], float]) -> None:
        self.trials, self.console, self.elapsed = trials, console, elapsed
        self.lines = TrialProgress(trials, self.say, elapsed)
        self.live = self  # `with view.live:` as with a LiveView; the exit prints the end line

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None:
            self.say(f"search ended [{self.elapsed():.0f} s elapsed]")

    def say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def refresh(self, study: optuna.Study) -> None:
        """One line per trial finished since the last call, by this process or any other worker."""
        self.lines.refresh(study)

    def events(self) -> SearchEvents:
        def on_start(study: optuna.Study, steps: int) -> None:
            self.lines.start(study)
            self.say(f"search started: study {study.study_name}, {steps} steps per trial, "
                     f"{state_counts(study)['finished']}/{self.trials} trials finished "
                     f"[{self.elapsed():.0f} s elapsed]")

        return SearchEvents(on_start=on_start, on_trial_end=lambda study, trial: self.refresh(study))
