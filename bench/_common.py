"""Shared bits of the benchmark scripts: machine facts, the data sets, a result line."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
BENCH_HOME = Path(os.environ.get("AUTOMEL_BENCH_HOME", "/tmp/automel-bench"))
if os.environ.get("AUTOMEL_BENCH_THREADS"):
    # One thread per process keeps side-by-side comparisons fair when other work shares the two cores.
    torch.set_num_threads(int(os.environ["AUTOMEL_BENCH_THREADS"]))


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}")


def default_corpus() -> Path:
    from automel.data.synth import default_corpus as make

    BENCH_HOME.mkdir(parents=True, exist_ok=True)
    return make(BENCH_HOME)


def report(name: str, **values: object) -> None:
    print(json.dumps({"bench": name, **values}), flush=True)


def labelled_sets(names: str) -> dict[str, tuple[Path, Path]]:
    """Data sets with their answer keys, by name (``hw4-sample``, ``synthetic``), comma-separated."""
    sets = {"hw4-sample": (SHARED_DATA / "hw4-sample", SHARED_DATA / "hw4-sample.answers.csv")}
    if "synthetic" in names:
        corpus = default_corpus()
        sets["synthetic"] = (corpus, corpus / "answers.csv")
    return {name: sets[name] for name in names.split(",")}


def test_accuracy(model: torch.nn.Module, work: Any, speakers: list[str], answers: Path) -> float:
    """The model's submission scored against ``answers`` (read only here, to score)."""
    import tempfile

    from automel.score import score_submission
    from automel.submission import write_submission_rows
    from automel.train.fit import test_submission

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "output.csv"
        write_submission_rows(path, test_submission(model, work.store, speakers))
        return score_submission(path, answers).accuracy
