"""Accuracy of the four presets (the course's levels) at equal steps, on hw4-sample and the synthetic default.

    .venv/bin/python bench/presets.py [--steps 500] [--presets simple,medium,hard,boss]

Prints one JSON line per (data set, preset): validation accuracy, test accuracy against the answer key,
parameters, steps/s. The answer keys are read only here, to score — never to train or select.
"""

from __future__ import annotations

import argparse

import torch
from _common import BENCH_HOME, labelled_sets, machine, report, test_accuracy

from automel.presets import preset_params
from automel.train.config import RunSettings
from automel.train.fit import open_workspace, train_run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--presets", default="simple,medium,hard,boss")
    parser.add_argument("--datasets", default="hw4-sample,synthetic")
    args = parser.parse_args()
    for name, (data, answers) in labelled_sets(args.datasets).items():
        work = open_workspace(data, BENCH_HOME)
        for preset in args.presets.split(","):
            settings = RunSettings(steps=args.steps, valid_every=max(1, args.steps // 5), seed=0)
            model, result, record = train_run(preset_params(preset), work, settings, torch.device("cpu"))
            test_acc = test_accuracy(model, work, record.speakers, answers)
            report("presets", machine=machine(), data=name, preset=preset, steps=args.steps,
                   valid_acc=round(result.best_valid_acc, 4), test_acc=round(test_acc, 4),
                   params=sum(p.numel() for p in model.parameters()),
                   steps_per_s=round(result.steps / result.seconds, 2))


if __name__ == "__main__":
    main()
