"""Does training-batch augmentation help when the test comes through another channel?

    AUTOMEL_BENCH_THREADS=1 .venv/bin/python bench/channel_shift.py [--data DIR] [--answers CSV] [--steps 500]
        [--levels off,light,strong] [--config params.json]

Builds a channel-shifted copy of the data set in a temporary folder (HW4 layout: ``metadata.json``,
``mapping.json`` and ``testdata.json`` copied, training ``.pt`` files linked unchanged, every *test*
utterance rewritten through its own random channel in the log-mel domain: noise at 15-30 dB SNR, a
gain of +-6 dB, a spectral tilt of up to +-10 dB and a smooth EQ of +-6 dB). Then it trains the same
model with augmentation off and with both kinds (``train.specaugment``, ``train.channel_aug``) at each
other level, and scores each model's submission on the clean and on the shifted test set against the
answer key (read only here, to score).

The shift is drawn from the same family of log-mel transforms as :mod:`automel.data.augment`'s channel
perturbation (wider ranges, another seed), so it measures robustness to the channels that augmentation
imitates, not to real microphones. Prints one JSON line per level; the default model is the ``encoders``
benchmark's (Transformer, attentive-stats pooling, AM-softmax) with ``TrainParams`` defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from _common import BENCH_HOME, SHARED_DATA, machine, report, test_accuracy

from automel.data.augment import ChannelLevel, channel_perturb
from automel.train.config import RunSettings
from automel.train.fit import open_workspace, train_run

MODEL: dict[str, Any] = {"encoder": "transformer", "pooling": "attentive-stats", "head": "am-softmax"}
SHIFT = ChannelLevel(gain_db=(-6.0, 6.0), tilt_db=(-10.0, 10.0), eq_db=6.0, eq_components=4, noise_prob=1.0,
                     snr_db=(15.0, 30.0), noise_color_db=10.0, noise_jitter_db=1.5)
SHIFT_SEED = 20_240_601


def shifted_copy(root: Path, out: Path, seed: int = SHIFT_SEED) -> Path:
    """``root`` with every test utterance passed through its own random :data:`SHIFT` channel, at ``out``."""
    out.mkdir(parents=True)
    for name in ("metadata.json", "mapping.json", "testdata.json"):
        shutil.copy2(root / name, out / name)
    metadata = json.loads((root / "metadata.json").read_text())
    for utterances in metadata["speakers"].values():
        for utterance in utterances:
            target = out / utterance["feature_path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink((root / utterance["feature_path"]).resolve(), target)
    generator = torch.Generator().manual_seed(seed)
    for utterance in json.loads((root / "testdata.json").read_text())["utterances"]:
        features = torch.load(root / utterance["feature_path"], weights_only=True)  # (T, F)
        mask = torch.ones((1, len(features)), dtype=torch.bool)
        shifted = channel_perturb(features.float().unsqueeze(0), mask, SHIFT, generator)[0]
        target = out / utterance["feature_path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.save(shifted.to(features.dtype).contiguous(), target)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "hw4-sample")
    parser.add_argument("--answers", type=Path, default=SHARED_DATA / "hw4-sample.answers.csv")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--levels", default="off,light,strong", help="augmentation levels to compare")
    parser.add_argument("--config", type=Path, help="JSON of model/training parameters [default: MODEL]")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shifted", type=Path,
                        help="a ready channel-shifted copy of --data (e.g. realspeech.py --channel-shift, shifted in "
                             "the audio domain) instead of the log-mel shift built here")
    args = parser.parse_args()
    base = json.loads(args.config.read_text()) if args.config else dict(MODEL)
    work = open_workspace(args.data, BENCH_HOME, split_seed=args.seed)
    with tempfile.TemporaryDirectory(prefix="channel-shift-") as tmp:
        source = args.shifted or shifted_copy(args.data, Path(tmp) / "shifted")
        shifted = open_workspace(source, Path(tmp) / "home", split_seed=args.seed)
        for level in args.levels.split(","):
            params = {**base, "train.specaugment": level, "train.channel_aug": level}
            settings = RunSettings(steps=args.steps, valid_every=max(1, args.steps // 5), seed=args.seed)
            model, result, record = train_run(params, work, settings, torch.device("cpu"))
            report("channel_shift", machine=machine(), data=work.store.dataset.name, augment=level,
                   steps=args.steps, valid_acc=round(result.best_valid_acc, 4),
                   clean_test_acc=round(test_accuracy(model, work, list(record.speakers), args.answers), 4),
                   shifted_test_acc=round(test_accuracy(model, shifted, list(record.speakers), args.answers), 4),
                   steps_per_s=round(result.steps / result.seconds, 2))


if __name__ == "__main__":
    main()
