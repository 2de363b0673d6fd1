"""Training-batch assembly: automel's store + tensor crops vs the course sample's DataLoader, same data.

    .venv/bin/python bench/batching.py [--data DIR] [--batches 400]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import BENCH_HOME, default_corpus, machine, report
from course_pipeline import course_loader

from automel.data.batching import RandomCrops
from automel.data.split import stratified_split
from automel.data.store import open_store


def course_rate(data: Path, batches: int) -> float:
    loader = course_loader(data, workers=2)
    it = iter(loader)
    next(it)  # worker start-up excluded: steady state only
    done, start = 0, time.perf_counter()
    while done < batches:
        try:
            next(it)
        except StopIteration:
            it = iter(loader)
            continue
        done += 1
    return batches / (time.perf_counter() - start)


def automel_rate(data: Path, batches: int) -> tuple[float, float]:
    start = time.perf_counter()
    store = open_store(data, BENCH_HOME)
    opened = time.perf_counter() - start
    split = stratified_split(store.labels.numpy(), 0.1, 0)
    crops = RandomCrops(store, split.train, 32, 128, seed=0)
    next(crops)
    start = time.perf_counter()
    for _ in range(batches):
        next(crops)
    return batches / (time.perf_counter() - start), opened


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--batches", type=int, default=400)
    args = parser.parse_args()
    data = args.data or default_corpus()
    automel_rate(data, 10)  # build the cache outside the measurement
    course = course_rate(data, args.batches)
    ours, opened = automel_rate(data, args.batches * 10)
    report("batching", machine=machine(), data=str(data), course_batches_per_s=round(course, 1),
           automel_batches_per_s=round(ours, 1), ratio=round(ours / course, 1), cached_open_s=round(opened, 3))


if __name__ == "__main__":
    main()
