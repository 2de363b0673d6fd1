"""Shared bits of the benchmark scripts: machine facts, the data sets, a result line."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

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
