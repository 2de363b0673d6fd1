"""The learning-rate schedule: linear warm-up, then cosine decay to zero, by steps *or* by the clock.

A run with a deadline (a refit, a trial the search's limit will cut, ``automel train --time-limit``) must
end annealed whatever the machine's speed turns out to be: a cosine planned for more steps than the time
allows is cut while the rate is still high, and the model never settles ("Budgeted training", Li, Yumer
& Ramanan, ICLR 2020: a schedule that decays to zero by the budget beats any schedule cut short).

So the decay's progress is the larger of two fractions: the steps done of the steps planned, and the
seconds spent of the seconds the deadline leaves (both counted from the end of the warm-up). The first
wins on a run that finishes its steps in time; the second on a run the deadline will cut, whose rate
then reaches zero exactly at the deadline. Progress never goes back, so the rate never rises again.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch


def cosine_factor(step: int, steps: int, warmup_steps: int) -> float:
    """Linear warm-up to 1, then cosine decay to 0 over ``steps`` (the course's ``get_cosine_schedule_with_warmup``)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, steps - warmup_steps)
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0))))


@dataclass
class Schedule:
    """Sets every parameter group's rate to ``base_lr * factor`` before each step; see the module docs.

    ``deadline`` is a ``time.monotonic()`` value or None (steps only). ``clock`` is injectable for tests.
    ``by_clock`` tells whether the clock, not the step count, set the decay at the last step.
    """

    optimizer: torch.optim.Optimizer
    steps: int
    warmup_steps: int
    deadline: float | None = None
    clock: Callable[[], float] = time.monotonic
    by_clock: bool = False
    progress: float = 0.0
    factor: float = 1.0  # of the base rate, at the last step set
    _warm_end: float | None = field(default=None, repr=False)
    _base: list[float] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        self._base = [float(group["lr"]) for group in self.optimizer.param_groups]
        if self.warmup_steps == 0:
            self._warm_end = self.clock()

    def set_step(self, step: int) -> float:
        """Set the rate for optimisation step ``step`` (0-based) and return its factor of the base rate."""
        if step < self.warmup_steps:
            factor = (step + 1) / self.warmup_steps
            self.progress = 0.0
        else:
            if self._warm_end is None:
                self._warm_end = self.clock()
            by_steps = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
            by_time = self._time_progress()
            self.by_clock = by_time > by_steps
            self.progress = min(1.0, max(self.progress, by_steps, by_time))
            factor = 0.5 * (1.0 + math.cos(math.pi * self.progress))
        for group, base in zip(self.optimizer.param_groups, self._base, strict=True):
            group["lr"] = base * factor
        self.factor = factor
        return factor

    def _time_progress(self) -> float:
        if self.deadline is None or self._warm_end is None:
            return 0.0
        return (self.clock() - self._warm_end) / max(self.deadline - self._warm_end, 1e-6)

    @property
    def finished(self) -> bool:
        """The rate has decayed to zero: the run is annealed and further steps would not move it."""
        return self.progress >= 1.0 - 1e-9

    def last_lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])
