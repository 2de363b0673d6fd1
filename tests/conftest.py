"""Shared fixtures: the real data in ../shared, an isolated automel home and registry, and a CLI runner."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pytest
import torch
from typer.testing import CliRunner

from automel.registry import DISABLE_ENV, reset_default_registry

if TYPE_CHECKING:
    from automel.engine.handle import StudyHandle

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


# A study and an export written before issue 23 (commit c121faf), and the data set they were run on:
# ``tests/fixtures/before_issue_23/home`` holds study ``old``: five trials of a 4-speaker synthetic corpus (only
# trial 4, a 155k-parameter model, within the study's ``--max-params 160000``), its kept weights, and the export
# ``automel export --study old --trial 4`` wrote then (an ``export.json`` without ``members``). The corpus is
# generated again here, byte for byte, from its seed.
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "before_issue_23" / "home"


@pytest.fixture(scope="session")
def old_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from automel.data.synth import SynthSpec, generate_corpus

    spec = SynthSpec(speakers=4, utterances=8, seed=0, test_per_speaker=2)
    return generate_corpus(tmp_path_factory.mktemp("old") / "data", spec, jobs=1)


@pytest.fixture
def old_home(isolated_home: Path) -> Path:
    """The study ``old`` (and its export) copied into this test's home."""
    shutil.copytree(FIXTURE, isolated_home, dirs_exist_ok=True)
    return isolated_home


@pytest.fixture
def old_study(old_home: Path) -> tuple[StudyHandle, optuna.Study]:
    from automel.engine.handle import StudyHandle

    handle = StudyHandle.find(old_home, "old")
    return handle, handle.load()
