"""Shared fixtures: the real data in ../shared, an isolated automel home and registry, and a CLI runner."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from automel.registry import DISABLE_ENV, reset_default_registry

# The core suite tests the built-ins only, whatever plugin packages the venv holds. Set before any test
# module is imported, so nothing collected can fill the default registry with external plugins; tests of
# external loading build their own registry (``build_registry(autoload=True)``) or turn autoload back on.
os.environ[DISABLE_ENV] = "1"
reset_default_registry()
# Rich wraps at the terminal width; a wide one keeps long paths on one line in captured output.
os.environ.setdefault("COLUMNS", "200")
# One torch thread per process: OpenMP threads that busy-wait collapse (10x slower) as soon as anything
# else shares the two cores, and the suite's own subprocesses inherit this through the environment.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"
HW4_SAMPLE = SHARED_DATA / "hw4-sample"
HW4_ANSWERS = SHARED_DATA / "hw4-sample.answers.csv"
LIBRISPEECH = SHARED_DATA / "librispeech-test-other"
FSDD = SHARED_DATA / "fsdd"


def need(path: Path) -> Path:
    """Skip (with the reason) when a piece of ../shared is absent, as on a user's fresh clone."""
    if not path.exists():
        pytest.skip(f"{path} is absent: these tests use the real data in ../shared beside the repository")
    return path


@pytest.fixture
def hw4_sample() -> Path:
    return need(HW4_SAMPLE)


@pytest.fixture
def hw4_answers() -> Path:
    return need(HW4_ANSWERS)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own AUTOMEL_HOME, so no test reads another's caches or studies."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("AUTOMEL_HOME", str(home))
    monkeypatch.setenv(DISABLE_ENV, "1")  # undoes a test's own change of the switch
    yield home


@pytest.fixture(autouse=True)
def isolated_registry() -> Iterator[None]:
    """Every test starts with a fresh default registry (built-ins only) and leaves none behind: a plugin one
    test registers never reaches the next."""
    reset_default_registry()
    yield
    reset_default_registry()


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def run(cli: CliRunner, *args: object) -> tuple[int, str, str]:
    """Run ``automel ARGS`` in-process; return (exit code, stdout, stderr)."""
    from automel.cli import app

    result = cli.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr
