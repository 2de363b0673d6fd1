"""Accuracy of the four presets (the course's levels) at equal steps, on hw4-sample and the synthetic default.

    .venv/bin/python bench/presets.py [--steps 500] [--presets simple,medium,hard,boss]

Prints one JSON line per (data set, preset): validation accuracy, test accuracy against the answer key,
parameters, steps/s. The answer keys are read only here, to score — never to train or select.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from _common import BENCH_HOME, SHARED_DATA, default_corpus, machine, report

from automel.presets import preset_params
from automel.runs import write_submission_rows
from automel.score import score_submission
from automel.train.config import RunSettings
from automel.train.run import open_workspace, test_submission, train_run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--presets", default="simple,medium,hard,boss")
    parser.add_argument("--datasets", default="hw4-sample,synthetic")
    args = parser.parse_args()
    sets = {"hw4-sample": (SHARED_DATA / "hw4-sample", SHARED_DATA / "hw4-sample.answers.csv")}
    if "synthetic" in args.datasets:
        corpus = default_corpus()
        sets["synthetic"] = (corpus, corpus / "answers.csv")
    for name in args.datasets.split(","):
        data, answers = sets[name]
        work = open_workspace(data, BENCH_HOME)
        for preset in args.presets.split(","):
            settings = RunSettings(steps=args.steps, valid_every=max(1, args.steps // 5), seed=0)
            model, result, record = train_run(preset_params(preset), work, settings, torch.device("cpu"))
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "output.csv"
                write_submission_rows(path, test_submission(model, work.store, record.speakers))
                test_acc = score_submission(path, answers).accuracy
            report("presets", machine=machine(), data=name, preset=preset, steps=args.steps,
                   valid_acc=round(result.best_valid_acc, 4), test_acc=round(test_acc, 4),
                   params=sum(p.numel() for p in model.parameters()),
                   steps_per_s=round(result.steps / result.seconds, 2))


if __name__ == "__main__":
    main()
