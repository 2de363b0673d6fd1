"""Trials that raise are marked FAIL with their reason, and the search goes on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.trial import TrialState
from torch import nn
from typer.testing import CliRunner

from automel.plugin import EncoderPlugin
from automel.registry import default_registry
from automel.search.study import default_storage, open_storage
from tests.conftest import run


@dataclass(frozen=True)
class FlakyConfig:
    width: int = 32
    explode: bool = False


class _Flaky(nn.Module):
    def __init__(self, config: FlakyConfig, in_dim: int) -> None:
        super().__init__()
        self.linear, self.explode, self.out_dim = nn.Linear(in_dim, config.width), config.explode, config.width

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.explode and self.training:
            raise RuntimeError("flaky encoder exploded on purpose")
        return self.linear((x - 15.0) / 4.0)


class Flaky(EncoderPlugin):
    """An encoder that raises inside training for half of its search space."""

    name = "flaky"
    config_cls = FlakyConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> FlakyConfig:
        return FlakyConfig(trial.suggest_categorical(cls.param("width"), [16, 32]),
                           trial.suggest_categorical(cls.param("explode"), [False, True]))

    @classmethod
    def build(cls, config: Any, in_dim: int) -> nn.Module:
        return _Flaky(config, in_dim)


@pytest.fixture
def flaky_registered() -> Iterator[None]:
    registry = default_registry()
    registry.register(Flaky, "tests", "0")
    yield
    del registry._entries["encoder"]["flaky"]


def test_failing_trials_are_recorded_and_the_search_goes_on(cli: CliRunner, hw4_sample: Path,
                                                             isolated_home: Path, flaky_registered: None) -> None:
    code, stdout, stderr = run(cli, "search", "--data", hw4_sample, "--study", "flaky", "--trials", 4,
                               "--steps-per-trial", 20, "--encoders", "flaky", "--poolings", "mean",
                               "--heads", "softmax", "--sampler", "random", "--seed", 3, "--device", "cpu",
                               "--no-refit", "--quality", "fast")
    assert code == 0, stderr
    study = optuna.load_study(study_name="flaky",
                              storage=open_storage(default_storage(isolated_home, "flaky"), heartbeat=False))
    failed = study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(finished) == 4 and failed
    for trial in failed:
        assert trial.params["encoder.flaky.explode"] is True
        assert "flaky encoder exploded on purpose" in trial.user_attrs["fail_reason"]
    code, stdout, _ = run(cli, "show", "--study", "flaky")
    assert code == 0 and "flaky encoder exploded on purpose" in stdout


def test_a_search_that_only_fails_stops_with_the_reason(cli: CliRunner, hw4_sample: Path, isolated_home: Path,
                                                        flaky_registered: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def always_explode(self: _Flaky, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("flaky encoder exploded on purpose")

    monkeypatch.setattr(_Flaky, "forward", always_explode)
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--study", "doomed", "--trials", 2,
                          "--steps-per-trial", 20, "--encoders", "flaky", "--poolings", "mean", "--heads", "softmax",
                          "--device", "cpu")
    assert code == 2
    assert "failed in a row" in stderr and "exploded on purpose" in stderr
