"""Training throughput of the Simple model: automel's loop vs the course sample's loop vs the bare bound.

All three train the same model (the seed's Simple classifier) on the same data in one run:
- course: per-item ``torch.load`` Dataset, DataLoader(32, shuffle, drop_last, 2 workers, pad -20), AdamW 1e-3,
  warm-up + cosine, the seed's Classifier;
- automel: ``automel.train.fit`` on the cached feature store with the ``simple`` preset;
- bound: forward + backward + optimiser step on one fixed in-memory batch (no data work at all).

    .venv/bin/python bench/train_throughput.py [--data DIR] [--steps 300]
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import BENCH_HOME, default_corpus, machine, report
from course_pipeline import Classifier, course_loader

from automel.model import build_model
from automel.presets import preset_params
from automel.train.config import RunSettings, TrainParams
from automel.train.fit import open_workspace
from automel.train.loop import fit


def schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * 0.5 * progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def course_steps_per_s(data: Path, steps: int, classes: int) -> float:
    model = Classifier(n_spks=classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = schedule(optimizer, steps // 10, steps)
    loader = course_loader(data)
    it = iter(loader)
    next(it)
    start = time.perf_counter()
    for _ in range(steps):
        try:
            mels, labels = next(it)
        except StopIteration:
            it = iter(loader)
            mels, labels = next(it)
        loss = F.cross_entropy(model(mels), labels)
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    return steps / (time.perf_counter() - start)


def automel_steps_per_s(data: Path, steps: int) -> float:
    work = open_workspace(data, BENCH_HOME)
    model = build_model(preset_params("simple"), work.store.n_mels, work.store.num_classes)
    settings = RunSettings(steps=steps, valid_every=steps + 1, log_every=50)  # no validation inside the window
    marks: dict[int, float] = {}
    fit(model, work.store, work.split, TrainParams(normalize="none"), settings, torch.device("cpu"),
        on_progress=lambda step, metrics: marks.setdefault(step, time.perf_counter()))
    first, last = min(marks), max(s for s in marks if s < steps)
    return (last - first) / (marks[last] - marks[first])


def bound_steps_per_s(steps: int, classes: int) -> float:
    model = build_model(preset_params("simple"), 40, classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, mask = torch.randn(32, 128, 40) + 15, torch.ones(32, 128, dtype=torch.bool)
    labels = torch.randint(0, classes, (32,))
    for _ in range(5):
        F.cross_entropy(model(x, mask, labels), labels).backward()
    start = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x, mask, labels), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    data = args.data or default_corpus()
    work = open_workspace(data, BENCH_HOME)
    classes = work.store.num_classes
    course = course_steps_per_s(data, args.steps, classes)
    ours = automel_steps_per_s(data, args.steps)
    bound = bound_steps_per_s(args.steps, classes)
    report("train_throughput", machine=machine(), data=str(data), steps=args.steps,
           course_steps_per_s=round(course, 2), automel_steps_per_s=round(ours, 2), bound_steps_per_s=round(bound, 2),
           vs_course=round(ours / course, 2), of_bound=round(ours / bound, 3))


if __name__ == "__main__":
    main()
