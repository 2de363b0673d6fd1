"""The Rich progress bar of a training run (used by ``train`` and inside the live search view)."""

from __future__ import annotations

from typing import Any

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
