"""Progress: the Rich bar of a training run (``train``, the live search view) and of counted work (a
feature-cache build), or plain lines with counts when the output is not a terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn


def training_progress(**kwargs: Any) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  train {task.fields[train_acc]}  valid {task.fields[valid_acc]}"
                   "  lr {task.fields[lr]}  {task.fields[rate]} steps/s"),
        TimeRemainingColumn(), **kwargs,
    )


def add_training_task(progress: Progress, description: str, steps: int | None) -> TaskID:
    """A task of ``steps`` (None: a run that the clock ends, shown without a total)."""
    return progress.add_task(description, total=steps, loss="-", train_acc="-", valid_acc="-", lr="-", rate="-")


def progress_hook(progress: Progress, task: TaskID) -> Any:
    """A ``fit`` progress hook that updates ``task``."""

    def update(step: int, metrics: dict[str, float]) -> None:
        fields: dict[str, Any] = {
            "loss": f"{metrics['loss']:.3f}", "train_acc": f"{metrics['train_acc']:.1%}",
            "lr": f"{metrics['lr']:.1e}", "rate": f"{step / max(metrics['seconds'], 1e-9):.1f}",
        }
        if "valid_acc" in metrics:
            fields["valid_acc"] = f"{metrics['valid_acc']:.1%}"
        progress.update(task, completed=step, **fields)

    return update


Counted = Callable[[int, int], None]  # (done, total)


def plain_counts(console: Console, what: str, unit: str) -> Counted:
    """Plain lines ``what: 6,000/60,000 unit`` at every tenth and at the end (a pipe, a log file)."""
    from automel.engine.job import counted_lines

    return counted_lines(lambda line: console.print(line, highlight=False, soft_wrap=True, markup=False), what, unit)


@contextlib.contextmanager
def counted_progress(console: Console, what: str, unit: str) -> Iterator[Counted]:
    """A transient Rich bar on a terminal, else :func:`plain_counts`; nothing shows unless work is reported."""
    if not console.is_terminal:
        yield plain_counts(console, what, unit)
        return
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True) as progress:
        task: list[TaskID] = []

        def update(done: int, total: int) -> None:
            if not task:
                task.append(progress.add_task(what, total=total))
            progress.update(task[0], completed=done, total=total)

        yield update
