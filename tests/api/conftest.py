"""Fixtures the API's tests share: one home for the package, and a 4-step model of hw4-sample that
:func:`automel.api.train` trained there (once: the feature cache is built once too)."""

from __future__ import annotations

from pathlib import Path

import pytest

import automel.api
from tests.conftest import HW4_SAMPLE, need


@pytest.fixture(scope="package")
def api_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-home")


@pytest.fixture(scope="package")
def training(tmp_path_factory: pytest.TempPathFactory, api_home: Path) -> tuple[automel.api.TrainRun, list[str]]:
    """``automel.api.train`` of the simple preset, 4 steps, on hw4-sample, as a notebook calls it; with the
    lines its progress callback heard."""
    lines: list[str] = []
    run = automel.api.train("simple", data=need(HW4_SAMPLE), steps=4, valid_every=2, device="cpu",
                            out=tmp_path_factory.mktemp("trained") / "run", home=api_home, progress=lines.append)
    return run, lines


@pytest.fixture(scope="package")
def trained(training: tuple[automel.api.TrainRun, list[str]]) -> automel.api.TrainRun:
    return training[0]
