"""The learning-rate schedule by steps and by the clock, alone and inside the training loop."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from automel.train.config import RunSettings, TrainParams
from automel.train.fit import Workspace, open_workspace
from automel.train.loop import fit, lr_lambda
from automel.train.schedule import Schedule
from tests.train.test_loop import MeanLinear


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=lr)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_without_a_deadline_it_is_the_course_schedule() -> None:
    optimizer = _optimizer(2.0)
    schedule = Schedule(optimizer, steps=100, warmup_steps=10)
    expected = lr_lambda(100, 10)
    for step in range(100):
        assert schedule.set_step(step) == pytest.approx(expected(step))
        assert optimizer.param_groups[0]["lr"] == pytest.approx(2.0 * expected(step))
    assert not schedule.by_clock


def test_a_deadline_that_comes_first_anneals_the_rate_to_zero_by_then() -> None:
    clock = FakeClock()
    optimizer = _optimizer()
    # 1,000 steps planned, but the deadline leaves 10 s and each step takes 0.1 s: 100 steps will run
    schedule = Schedule(optimizer, steps=1000, warmup_steps=0, deadline=clock.now + 10.0, clock=clock)
    factors = []
    for step in range(100):
        factors.append(schedule.set_step(step))
        clock.now += 0.1
    assert factors[0] == pytest.approx(1.0)
    assert factors[50] == pytest.approx(0.5, abs=0.02)  # half the time is half the decay
    assert all(a >= b for a, b in itertools.pairwise(factors))  # the rate never rises again
    schedule.set_step(100)
    assert schedule.finished and schedule.by_clock and schedule.factor == pytest.approx(0.0, abs=1e-9)


def test_a_deadline_after_the_last_step_changes_nothing() -> None:
    clock = FakeClock()
    schedule = Schedule(_optimizer(), steps=50, warmup_steps=5, deadline=clock.now + 1e6, clock=clock)
    expected = lr_lambda(50, 5)
    for step in range(50):
        assert schedule.set_step(step) == pytest.approx(expected(step))
        clock.now += 1.0
    assert not schedule.by_clock


def test_the_clock_counts_from_the_end_of_the_warm_up() -> None:
    clock = FakeClock()
    schedule = Schedule(_optimizer(), steps=1000, warmup_steps=10, deadline=clock.now + 20.0, clock=clock)
    for step in range(10):  # the warm-up takes 10 s of the 20
        assert schedule.set_step(step) == pytest.approx((step + 1) / 10)
        clock.now += 1.0
    assert schedule.set_step(10) == pytest.approx(1.0)
    clock.now += 5.0  # half of the 10 s left after the warm-up
    assert schedule.set_step(11) == pytest.approx(0.5, abs=0.01)


@pytest.fixture
def work(hw4_sample: Path, isolated_home: Path) -> Workspace:
    return open_workspace(hw4_sample, isolated_home)


def test_a_run_cut_by_its_deadline_ends_annealed_and_says_so(work: Workspace) -> None:
    started = time.monotonic()
    settings = RunSettings(steps=1_000_000, valid_every=1_000_000, log_every=10, validate=False,
                           deadline=started + 2.0)
    result = fit(MeanLinear(40, 10), work.store, work.split, TrainParams(lr=1e-2, warmup=0.0), settings,
                 torch.device("cpu"))
    assert result.stopped_by_deadline and result.schedule == "clock" and result.annealed
    assert result.final_lr < 1e-4 and result.planned_steps == 1_000_000 and 10 < result.steps < 1_000_000
    assert time.monotonic() - started < 4.0
    # a run without validation logs its curve: loss, rate and training accuracy every log_every steps
    assert [row["step"] for row in result.history][:3] == [10.0, 20.0, 30.0]
    assert all({"loss", "lr", "train_acc"} <= set(row) for row in result.history)
    lrs = [row["lr"] for row in result.history]
    assert lrs[0] > lrs[len(lrs) // 2] > lrs[-1]


def test_a_run_that_finishes_its_steps_first_is_scheduled_by_steps(work: Workspace) -> None:
    settings = RunSettings(steps=40, valid_every=20, log_every=10, deadline=time.monotonic() + 600)
    result = fit(MeanLinear(40, 10), work.store, work.split, TrainParams(lr=1e-2, warmup=0.0), settings,
                 torch.device("cpu"))
    assert result.steps == 40 and result.schedule == "steps" and result.annealed and not result.stopped_by_deadline
