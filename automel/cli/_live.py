"""The live terminal view of a search: trial progress, the running trial, counts and a leaderboard."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from automel.cli._progress import add_training_task, progress_hook, training_progress
from automel.search.runner import SearchEvents, state_counts

KEY_PARAMS = ("train.lr", "train.batch_size", "train.segment_len")


def leaderboard(study: optuna.Study, top: int = 5) -> Table:
    table = Table(title="Leaderboard", title_justify="left")
    for column in ("#", "encoder", "pooling", "head", "key parameters", "valid acc", "steps", "time"):
        table.add_column(column)
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    for trial in sorted(complete, key=lambda t: -(t.value or 0.0))[:top]:
        p = trial.params
        key = "  ".join(f"{k.split('.')[-1]}={_fmt(p[k])}" for k in KEY_PARAMS if k in p)
        table.add_row(str(trial.number), p.get("encoder", "?"), p.get("pooling", "?"), p.get("head", "?"), key,
                      f"{trial.value:.2%}", str(trial.user_attrs.get("steps", "")),
                      f"{trial.user_attrs.get('seconds', 0):.0f} s")
    return table


def _fmt(value: Any) -> str:
    return f"{value:.1e}" if isinstance(value, float) else str(value)


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
        self.live = Live(self._render(), console=console, refresh_per_second=4, transient=False)

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
