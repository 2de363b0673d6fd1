"""ECAPA-TDNN (the ``automel-ecapa`` plugin) against the built-in encoders at equal steps.

    AUTOMEL_BENCH_THREADS=1 .venv/bin/python bench/encoders.py [--steps 500] [--datasets hw4-sample,synthetic]

Every model gets the same pooling (attentive-stats, hidden 128), head (AM-softmax, s 30, m 0.2 warmed up
over 20 %), training parameters (``TrainParams`` defaults: AdamW 1e-3, 5 % warm-up then cosine, batch
32 x 128 frames, weight decay 0.01, global normalisation) and seed. The encoders:

- ``transformer``: the built-in default, the course's Simple encoder (d_model 80, 1 layer);
- ``conformer``: the built-in default, the ``hard`` preset's encoder (d_model 144, 3 layers);
- ``ecapa-cpu``: ECAPA-TDNN at the largest size of its CPU-scale search space (C 128, scale 8, 3 blocks,
  SE 64, MFA 384), the paper's shape at a CPU's width;
- ``ecapa-paper``: the plugin's default, the paper's C = 512 model (not in the default list: ~10 x slower).
- ``tdnn``: the built-in x-vector TDNN (Snyder et al. 2018) at its defaults, C 256 / out 512 (not in the
  default list).

Prints one JSON line per (data set, encoder): validation accuracy, test accuracy against the answer key
(read only here, to score), parameters, steps/s. Needs ``pip install -e plugins/automel-ecapa``.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
from _common import BENCH_HOME, labelled_sets, machine, report, test_accuracy

from automel.registry import default_registry
from automel.train.config import RunSettings
from automel.train.fit import open_workspace, train_run

COMMON: dict[str, Any] = {"pooling": "attentive-stats", "head": "am-softmax"}
ENCODERS: dict[str, dict[str, Any]] = {
    "transformer": {"encoder": "transformer"},
    "conformer": {"encoder": "conformer"},
    "ecapa-cpu": {
        "encoder": "ecapa-tdnn",
        "encoder.ecapa-tdnn.channels": 128,
        "encoder.ecapa-tdnn.scale": 8,
        "encoder.ecapa-tdnn.num_blocks": 3,
        "encoder.ecapa-tdnn.se_channels": 64,
        "encoder.ecapa-tdnn.mfa_channels": 384,
    },
    "ecapa-paper": {"encoder": "ecapa-tdnn"},
    "tdnn": {"encoder": "tdnn"},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--encoders", default="transformer,conformer,ecapa-cpu")
    parser.add_argument("--datasets", default="hw4-sample,synthetic")
    args = parser.parse_args()
    if "ecapa-tdnn" not in default_registry().names("encoder"):
        raise SystemExit("the ecapa-tdnn encoder is not installed: pip install -e plugins/automel-ecapa")
    for name, (data, answers) in labelled_sets(args.datasets).items():
        work = open_workspace(data, BENCH_HOME)
        for encoder in args.encoders.split(","):
            settings = RunSettings(steps=args.steps, valid_every=max(1, args.steps // 5), seed=0)
            params = {**ENCODERS[encoder], **COMMON}
            model, result, record = train_run(params, work, settings, torch.device("cpu"))
            test_acc = test_accuracy(model, work, record.speakers, answers)
            report("encoders", machine=machine(), data=name, encoder=encoder, steps=args.steps,
                   valid_acc=round(result.best_valid_acc, 4), test_acc=round(test_acc, 4),
                   params=sum(p.numel() for p in model.parameters()),
                   encoder_params=sum(p.numel() for p in model.get_submodule("encoder").parameters()),
                   steps_per_s=round(result.steps / result.seconds, 2))


if __name__ == "__main__":
    main()
