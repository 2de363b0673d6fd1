"""Trials that raise are marked FAIL with their reason, and the search goes on."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from automel.engine.handle import StudyHandle
from automel.engine.study import open_storage
from automel.registry import default_registry
from automel.testing.plugins import FlakyEncoder, FlakyFrames
from tests.conftest import run


@pytest.fixture
def flaky_registered() -> Iterator[None]:
    """:class:`FlakyEncoder` in the default registry, the one ``automel search`` uses, for one test."""
    registry = default_registry()
    registry.register(FlakyEncoder, "tests", "0")
    yield
    registry.unregister("encoder", "flaky")


def test_failing_trials_are_recorded_and_the_search_goes_on(cli: CliRunner, hw4_sample: Path,
                                                             isolated_home: Path, flaky_registered: None) -> None:
    code, stdout, stderr = run(cli, "search", "--data", hw4_sample, "--study", "flaky", "--trials", 4,
                               "--steps-per-trial", 20, "--encoders", "flaky", "--poolings", "mean",
                               "--heads", "softmax", "--sampler", "random", "--seed", 3, "--device", "cpu",
                               "--no-refit", "--quality", "fast")
    assert code == 0, stderr
    study = optuna.load_study(study_name="flaky",
                              storage=open_storage(StudyHandle(isolated_home, "flaky").url, heartbeat=False))
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
    def always_explode(self: FlakyFrames, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("flaky encoder exploded on purpose")

    monkeypatch.setattr(FlakyFrames, "forward", always_explode)
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--study", "doomed", "--trials", 2,
                          "--steps-per-trial", 20, "--encoders", "flaky", "--poolings", "mean", "--heads", "softmax",
                          "--device", "cpu")
    assert code == 2
    assert "failed in a row" in stderr and "exploded on purpose" in stderr
