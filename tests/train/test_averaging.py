"""Tail weight averaging and BatchNorm re-estimation, alone and in the training loop."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from automel.train.averaging import TailAverage, reestimate_batchnorm
from automel.train.config import RunSettings, TrainParams
from automel.train.fit import Workspace, open_workspace
from automel.train.loop import fit


class PooledBatchNorm(nn.Module):
    """Masked mean of the frames, BatchNorm, linear: the smallest model with BatchNorm statistics."""

    def __init__(self, n_mels: int, classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(n_mels)
        self.linear = nn.Linear(n_mels, classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        weight = mask.unsqueeze(-1).float()
        return self.linear(self.norm((x * weight).sum(1) / weight.sum(1)))


def _batch(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x, torch.ones(x.shape[:2], dtype=torch.bool)


def test_the_average_is_the_mean_of_the_snapshots_in_the_tail() -> None:
    model = nn.Linear(1, 1, bias=False)
    average = TailAverage(model, snapshots=5)
    seen = []
    for step in range(101):
        with torch.no_grad():
            model.weight.fill_(float(step))
        before = average.n_averaged
        average.offer(step / 100)
        if average.n_averaged > before:
            seen.append(step)
    assert seen == [75, 82, 88, 94, 100]  # evenly spaced over the last quarter (rounded up to a step)
    averaged = average.finish(1.0)
    assert averaged is not None
    assert float(averaged.weight.detach()) == pytest.approx(sum(seen) / len(seen))


def test_a_run_with_fewer_than_two_snapshots_has_no_average() -> None:
    average = TailAverage(nn.Linear(1, 1), snapshots=4)
    average.offer(0.5)
    assert average.finish(0.5) is None


def test_batchnorm_statistics_are_recomputed_from_the_batches_given() -> None:
    model = PooledBatchNorm(3, 2)
    model.eval()
    batches = [_batch(torch.randn(8, 5, 3) * 2 + torch.tensor([1.0, -4.0, 9.0])) for _ in range(6)]
    momentum = model.norm.momentum
    assert reestimate_batchnorm(model, iter(batches)) == 6
    pooled = torch.cat([x.mean(1) for x, _ in batches])
    assert torch.allclose(model.norm.running_mean, pooled.mean(0), atol=1e-5)
    assert not model.training and model.norm.momentum == momentum
    # no batch at all leaves the statistics as they were, never reset
    kept = model.norm.running_mean.clone()
    assert reestimate_batchnorm(model, iter([])) == 0
    assert torch.equal(model.norm.running_mean, kept)
    assert reestimate_batchnorm(nn.Linear(3, 3), iter(batches)) == 0  # no BatchNorm: nothing to do


@pytest.fixture
def work(hw4_sample: Path, isolated_home: Path) -> Workspace:
    return open_workspace(hw4_sample, isolated_home)


def test_a_validated_run_weighs_the_average_against_its_last_weights(work: Workspace) -> None:
    result = fit(PooledBatchNorm(40, 10), work.store, work.split, TrainParams(lr=2e-2, warmup=0.0),
                 RunSettings(steps=120, valid_every=60, log_every=20, average=6), torch.device("cpu"))
    info = result.averaging
    assert info is not None and info["snapshots"] == 6 and info["bn_batches"] > 0
    last = result.history[-1]
    assert info["last_valid_acc"] == last["valid_acc"]
    assert info["wins"] == ((info["valid_acc"], -info["valid_loss"]) > (last["valid_acc"], -last["valid_loss"]))
    assert result.best_valid_acc == max(info["valid_acc"], *(m["valid_acc"] for m in result.history))


def test_a_refit_uses_the_average_only_when_trusted(work: Workspace) -> None:
    def last_weights(trusted: bool) -> tuple[dict[str, torch.Tensor], dict]:
        model = PooledBatchNorm(40, 10)
        result = fit(model, work.store, work.split, TrainParams(lr=2e-2, warmup=0.0),
                     RunSettings(steps=100, valid_every=100, validate=False, average=4, average_trusted=trusted),
                     torch.device("cpu"))
        assert result.averaging is not None
        return result.best_state, {k: v.detach().clone() for k, v in model.state_dict().items()}

    kept, trained = last_weights(False)
    assert torch.equal(kept["linear.weight"], trained["linear.weight"])
    averaged, trained = last_weights(True)
    assert not torch.equal(averaged["linear.weight"], trained["linear.weight"])
    assert averaged["norm.num_batches_tracked"] > 0


def test_short_runs_and_average_zero_do_not_average(work: Workspace) -> None:
    for settings in (RunSettings(steps=40, valid_every=20), RunSettings(steps=120, valid_every=60, average=0)):
        result = fit(PooledBatchNorm(40, 10), work.store, work.split, TrainParams(lr=2e-2), settings,
                     torch.device("cpu"))
        assert result.averaging is None
