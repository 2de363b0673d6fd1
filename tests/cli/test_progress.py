"""Progress of a feature-cache build (issue 24): counted lines when the output is not a terminal, nothing
when the cache is reused; and the plain-lines reporter on its own."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from automel.cli._progress import plain_counts
from tests.conftest import HW4_SAMPLE, need, run


def _cache_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("building the feature cache:")]


@pytest.fixture
def immediate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Report from the first count: the data sets here build their caches in well under the 2 s after which
    a real build starts to speak."""
    import automel.engine.job as job

    monkeypatch.setattr(job, "PROGRESS_AFTER_S", 0.0)


def test_train_counts_the_cache_build_then_is_silent_when_the_cache_is_reused(tmp_path: Path, immediate: None
                                                                              ) -> None:
    home = tmp_path / "home"
    args = ["train", "--preset", "simple", "--data", need(HW4_SAMPLE), "--steps", 2, "--valid-every", 2,
            "--device", "cpu", "--home", home]
    code, _, stderr = run(CliRunner(), *args, "--out", tmp_path / "a")
    assert code == 0, stderr
    lines = _cache_lines(stderr)
    assert 2 <= len(lines) <= 11, stderr
    done, total = map(lambda s: int(s.replace(",", "")), re.findall(r"([\d,]+)/([\d,]+)", lines[-1])[0])
    assert done == total > 0 and lines[-1].endswith("utterances")
    code, _, stderr = run(CliRunner(), *args, "--out", tmp_path / "b")
    assert code == 0, stderr
    assert _cache_lines(stderr) == []


def test_search_counts_the_cache_build(tmp_path: Path, immediate: None) -> None:
    code, _, stderr = run(CliRunner(), "search", "--data", need(HW4_SAMPLE), "--home", tmp_path, "--trials", 1,
                          "--steps-per-trial", 10, "--no-refit", "--no-portfolio", "--encoders", "tdnn",
                          "--device", "cpu", "--adapt", "none")
    assert code == 0, stderr
    assert _cache_lines(stderr), stderr


def test_plain_counts_say_each_tenth_once_and_the_end(immediate: None) -> None:
    out = io.StringIO()
    report = plain_counts(Console(file=out, width=200), "work", "items")
    for done in range(1, 1001):
        report(done, 1000)
    lines = out.getvalue().splitlines()
    assert lines[0] == "work: 1/1,000 items" and lines[-1] == "work: 1,000/1,000 items"
    assert len(lines) == 11


def test_the_library_search_tells_its_progress_callback_about_the_cache_build(tmp_path: Path, immediate: None
                                                                                   ) -> None:
    import automel

    lines: list[str] = []
    automel.search(need(HW4_SAMPLE), home=tmp_path, trials=1, steps_per_trial=10, refit=False, portfolio=False,
                   encoders=["tdnn"], device="cpu", adapt="none", progress=lines.append)
    counted = _cache_lines("\n".join(lines))
    assert counted and counted[-1].split(": ")[1].split(" ")[0].split("/")[0] == counted[-1].split("/")[1].split(" ")[0]


def test_a_short_build_says_nothing(tmp_path: Path) -> None:
    """A build of well under 2 s prints no progress line: a bad data set's error stays one line."""
    code, _, stderr = run(CliRunner(), "train", "--preset", "simple", "--data", need(HW4_SAMPLE), "--steps", 2,
                          "--valid-every", 2, "--device", "cpu", "--home", tmp_path / "home", "--out", tmp_path / "a")
    assert code == 0, stderr
    assert _cache_lines(stderr) == []
