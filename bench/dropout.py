"""automel's CPU dropout against ``F.dropout``, forward and backward, interleaved in one process.

    AUTOMEL_BENCH_THREADS=1 .venv/bin/python bench/dropout.py [--reps 30]

The shapes are a Conformer's at the CPU search size (batch 32 x 128 frames): the feed-forward's inner
activations ``(32, 128, 384)``, a model-width tensor ``(32, 128, 96)`` and attention weights
``(32, 4, 128, 128)``. Each repetition times ``y = dropout(x); y.backward(ones)`` for both; the median
of the repetitions after three warm-ups is reported, with the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _common import machine, report
from torch import Tensor

from automel.layers import cpu_dropout

SHAPES = ((32, 128, 384), (32, 128, 96), (32, 4, 128, 128))
P = 0.1


def once(dropout: Callable[[Tensor], Tensor], x: Tensor) -> float:
    started = time.perf_counter()
    y = dropout(x)
    y.backward(torch.ones_like(y))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    contenders: dict[str, Callable[[Tensor], Tensor]] = {
        "torch": lambda x: F.dropout(x, P, training=True),
        "automel": lambda x: cpu_dropout(x, P),
    }
    for shape in SHAPES:
        x = torch.randn(*shape, requires_grad=True)
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.reps + 3):
            for name, dropout in contenders.items():
                times[name].append(once(dropout, x))
        ms = {name: statistics.median(t[3:]) * 1e3 for name, t in times.items()}
        report("dropout", machine=machine(), shape=list(shape), p=P, torch_ms=round(ms["torch"], 2),
               automel_ms=round(ms["automel"], 2), speedup=round(ms["torch"] / ms["automel"], 2))


if __name__ == "__main__":
    main()
