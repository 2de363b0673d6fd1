"""Fixtures the reliability modules share: a home per module and a 4-step model of hw4-sample trained in it.

Module-scoped, so ``train`` runs once per module that asks for ``model``; a module that wants another kind of
model (a random one, :mod:`tests.reliability._models`) defines its own ``model`` fixture, which wins.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import HW4_SAMPLE, need, run


@pytest.fixture(scope="module")
def shared_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One home for the module, so the feature cache of hw4-sample is built once."""
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory, shared_home: Path) -> Path:
    """A 4-step model of hw4-sample: enough to load, embed, predict and break."""
    out = tmp_path_factory.mktemp("model") / "run"
    code, _, stderr = run(CliRunner(), "train", "--preset", "simple", "--data", need(HW4_SAMPLE), "--steps", 4,
                          "--valid-every", 2, "--out", out, "--device", "cpu", "--home", shared_home)
    assert code == 0, stderr
    return out
