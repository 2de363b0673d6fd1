"""Shared fixtures: the real data in ../shared, an isolated automel home, and a CLI runner."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

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
    # The core suite tests the built-ins only, whatever plugin packages the venv holds; tests of external
    # loading turn autoload back on themselves.
    monkeypatch.setenv("AUTOMEL_DISABLE_PLUGIN_AUTOLOAD", "1")
    yield home


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def run(cli: CliRunner, *args: object) -> tuple[int, str, str]:
    """Run ``automel ARGS`` in-process; return (exit code, stdout, stderr)."""
    from automel.cli import app

    result = cli.invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr
