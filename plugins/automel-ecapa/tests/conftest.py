"""Fixtures of the automel-ecapa tests: one torch thread, an isolated automel home, the data in ../shared.

No ``__init__.py`` here and every test module is named ``test_ecapa_*``, so this directory can be collected
in one run with automel's own ``tests`` package without module-name clashes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from automel.registry import DISABLE_ENV, Registry, build_registry, reset_default_registry

# One torch thread per process, inherited by the CLI subprocesses: OpenMP threads that busy-wait collapse
# as soon as anything else shares the machine's cores.
os.environ["OMP_NUM_THREADS"] = "1"
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[3]  # tests -> automel-ecapa -> plugins -> the repository
SHARED_DATA = REPO.parent / "shared" / "data"
HW4_SAMPLE = SHARED_DATA / "hw4-sample"


@pytest.fixture
def hw4_sample() -> Path:
    """The course's 10-speaker sample; skips (saying why) on a clone without ../shared beside it."""
    if not HW4_SAMPLE.exists():
        pytest.skip(f"{HW4_SAMPLE} is absent: this test uses the data in ../shared beside the repository")
    return HW4_SAMPLE


@pytest.fixture(autouse=True)
def isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Every test gets its own AUTOMEL_HOME and a fresh default registry; plugin autoload is on, since this
    package is a plugin (automel's own suite, if it ran earlier in the same process, turned it off)."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("AUTOMEL_HOME", str(home))
    monkeypatch.setenv(DISABLE_ENV, "0")
    reset_default_registry()
    yield home
    reset_default_registry()


@pytest.fixture
def registry() -> Registry:
    """Built-ins plus installed entry points, fresh, whatever the autoload switch says."""
    return build_registry(autoload=True)
