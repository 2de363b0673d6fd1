"""The training loop on its own: schedule, callbacks, best-weight copies, NaN detection, devices."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
import torch
from torch import nn

from automel.errors import ConfigError, NonFiniteLossError
from automel.train.config import RunSettings, TrainParams
from automel.train.device import autocast_dtype, release_memory, select_device
from automel.train.fit import Workspace, open_workspace
from automel.train.loop import fit, lr_lambda


class MeanLinear(nn.Module):
    """The smallest speaker model: masked mean of the frames, then a linear layer."""

    def __init__(self, n_mels: int, classes: int, nan_at: int | None = None) -> None:
        super().__init__()
        self.linear = nn.Linear(n_mels, classes)
        self.calls, self.nan_at = 0, nan_at

    def forward(self, x: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.training:
            self.calls += 1
        weight = mask.unsqueeze(-1).float()
        pooled = (x * weight).sum(1) / weight.sum(1)
        logits = self.linear((pooled - 15.0) / 4.0)
        if self.nan_at is not None and self.calls >= self.nan_at:
            logits = logits * float("nan")
        return logits


@pytest.fixture
def work(hw4_sample: Path, isolated_home: Path) -> Workspace:
    return open_workspace(hw4_sample, isolated_home)


def test_schedule_warms_up_then_decays() -> None:
    factor = lr_lambda(100, 10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(10) == pytest.approx(1.0) and factor(55) == pytest.approx(0.5)
    assert factor(100) == pytest.approx(0.0)
    assert lr_lambda(100, 0)(0) == pytest.approx(1.0)


def test_fit_learns_and_keeps_a_copy_of_the_best_weights(work: Workspace) -> None:
    model = MeanLinear(40, 10)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def remember(step: int, metrics: dict[str, float]) -> bool:
        snapshots[step] = {k: v.clone() for k, v in model.state_dict().items()}
        return False

    result = fit(model, work.store, work.split, TrainParams(lr=5e-2, warmup=0.0),
                 RunSettings(steps=60, valid_every=20, log_every=5), torch.device("cpu"), [remember])
    assert [int(m["step"]) for m in result.history] == [20, 40, 60]
    assert result.best_valid_acc == max(m["valid_acc"] for m in result.history) > 0.3
    best = snapshots[result.best_step]
    for key, value in result.best_state.items():
        assert torch.equal(value, best[key])
        assert value.data_ptr() != model.state_dict()[key].data_ptr()  # a copy, not a reference


def test_callback_stops_training(work: Workspace) -> None:
    result = fit(MeanLinear(40, 10), work.store, work.split, TrainParams(),
                 RunSettings(steps=100, valid_every=10), torch.device("cpu"), [lambda step, m: step >= 20])
    assert result.stopped_by_callback and result.steps == 20 and len(result.history) == 2


def test_non_finite_loss_names_the_step(work: Workspace) -> None:
    with pytest.raises(NonFiniteLossError, match="at step 7"):
        fit(MeanLinear(40, 10, nan_at=7), work.store, work.split, TrainParams(),
            RunSettings(steps=50, valid_every=25, log_every=10), torch.device("cpu"))


def test_same_seed_same_run(work: Workspace) -> None:
    def once() -> list[dict[str, float]]:
        torch.manual_seed(3)
        return fit(MeanLinear(40, 10), work.store, work.split, TrainParams(),
                   RunSettings(steps=20, valid_every=10, seed=3), torch.device("cpu")).history

    runs = [once(), once()]
    for a, b in zip(*runs, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {k: v for k, v in b.items() if k != "seconds"}


def test_device_selection() -> None:
    assert select_device("cpu") == torch.device("cpu")
    with mock.patch("torch.cuda.is_available", return_value=False):
        with pytest.raises(ConfigError, match="CUDA is not available"):
            select_device("cuda")
        assert select_device("auto").type in ("cpu", "mps")
    with pytest.raises(ConfigError, match="not a device"):
        select_device("gpu0")


def test_cuda_precision_and_memory_plumbing() -> None:
    cuda = torch.device("cuda")
    assert autocast_dtype(torch.device("cpu"), True) is None
    assert autocast_dtype(cuda, False) is None
    with mock.patch("torch.cuda.is_bf16_supported", return_value=True):
        assert autocast_dtype(cuda, True) == torch.bfloat16
    with mock.patch("torch.cuda.is_bf16_supported", return_value=False):
        assert autocast_dtype(cuda, True) == torch.float16
    with mock.patch("torch.cuda.empty_cache") as empty:
        release_memory(cuda)
        release_memory(torch.device("cpu"))
    assert empty.call_count == 1


def test_store_moves_to_another_device(work: Workspace) -> None:
    moved = work.store.to("meta")
    assert moved.features.device.type == "meta" and moved.labels.device.type == "meta"
    assert moved.paths == work.store.paths


def test_compile_option_compiles_the_training_forward(work: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[nn.Module] = []

    def fake_compile(module: nn.Module) -> nn.Module:  # torch.compile itself takes a minute on CPU
        compiled.append(module)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = MeanLinear(40, 10)
    fit(model, work.store, work.split, TrainParams(), RunSettings(steps=4, valid_every=4, compile=True),
        torch.device("cpu"))
    assert compiled == [model]


def test_a_training_step_never_waits_for_the_device(work: Workspace) -> None:
    """The step (forward, loss, backward, clipping, AdamW) on the ``meta`` device, where reading any value
    raises: no host-device sync per step. The host reads the loss only every ``log_every`` steps."""
    from automel.data.batching import RandomCrops
    from automel.model import build_model
    from automel.presets import preset_params
    from automel.train.loop import _Stepper

    meta = torch.device("meta")
    params = {**preset_params("boss"), "encoder.conformer.num_layers": 1, "encoder.conformer.d_model": 16,
              "encoder.conformer.dim_feedforward": 16, "encoder.conformer.nhead": 2}
    model = build_model(params, work.store.n_mels, work.store.num_classes).to(meta)
    optimizer = torch.optim.AdamW(model.parameters())
    stepper = _Stepper(model, model, optimizer, torch.amp.GradScaler("cpu", enabled=False), 5.0, None)
    crops = RandomCrops(work.store.on(meta), work.split.train, batch_size=4, segment_len=64, seed=0)
    for _ in range(3):
        loss, hits = stepper.step(next(crops))
        assert loss.device == meta and hits.device == meta


def test_deterministic_mode_is_scoped_to_the_run(work: Workspace) -> None:
    """``deterministic`` switches PyTorch to deterministic kernels for the run only, and gives one result."""
    seen: list[bool] = []

    def once() -> dict[str, torch.Tensor]:
        torch.manual_seed(5)
        model = MeanLinear(40, 10)
        settings = RunSettings(steps=10, valid_every=5, seed=5, deterministic=True)
        fit(model, work.store, work.split, TrainParams(), settings, torch.device("cpu"),
            [lambda s, m: seen.append(torch.are_deterministic_algorithms_enabled())])
        return model.state_dict()

    assert not torch.are_deterministic_algorithms_enabled()
    first, second = once(), once()
    assert seen and all(seen)  # on inside the run
    assert not torch.are_deterministic_algorithms_enabled()  # and off again after it
    for key in first:
        assert torch.equal(first[key], second[key])
