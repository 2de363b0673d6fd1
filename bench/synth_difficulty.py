"""How hard is the synthetic corpus? Two reference classifiers on its held-out test utterances.

1. Logistic regression on per-utterance mean+std of the log-mel (80 dims, standardised, max_iter 2000):
   a strong "long-term spectrum" baseline. The corpus is calibrated to keep it below 70%.
2. HW4's Simple model (Linear(40,80) prenet, one TransformerEncoderLayer(80, 2 heads, ff 256), mean
   pooling, Linear-ReLU-Linear head), AdamW 1e-3 with 1,000 warm-up steps then cosine, batch 32 random
   128-frame crops, 2,000 steps: calibrated to land between 40% and 80%.

Usage::

    .venv/bin/python bench/synth_difficulty.py                 # generate the default corpus, run both
    .venv/bin/python bench/synth_difficulty.py --data DIR      # an existing HW4-layout data set
    .venv/bin/python bench/synth_difficulty.py --skip-simple   # logistic regression only (fast)
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from automel.data.layout import read_answers, read_dataset
from automel.data.synth import SynthSpec, generate_corpus

CROP, PAD_VALUE = 128, -20.0


def load(root: Path) -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray]:
    """Train and test features with speaker ids (test labels from answers.csv)."""
    ds = read_dataset(root)
    answers = read_answers(root / "answers.csv")

    def feats(path: str) -> np.ndarray:
        return torch.load(root / path, weights_only=True).numpy()

    x_train = [feats(u.feature_path) for u in ds.train]
    y_train = np.array([ds.speaker_id(str(u.speaker)) for u in ds.train])
    x_test = [feats(u.feature_path) for u in ds.test]
    y_test = np.array([ds.speaker_id(answers[u.feature_path]) for u in ds.test])
    return x_train, y_train, x_test, y_test


def logistic_regression(x_train: list[np.ndarray], y_train: np.ndarray, x_test: list[np.ndarray],
                        y_test: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def stats(xs: list[np.ndarray]) -> np.ndarray:
        return np.stack([np.concatenate([x.mean(0), x.std(0)]) for x in xs])

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(stats(x_train), y_train)
    return float((model.predict(stats(x_test)) == y_test).mean())


class Simple(nn.Module):
    """HW4's Simple model."""

    def __init__(self, n_speakers: int, d_model: int = 80) -> None:
        super().__init__()
        self.prenet = nn.Linear(40, d_model)
        self.encoder = nn.TransformerEncoderLayer(d_model=d_model, nhead=2, dim_feedforward=256, dropout=0.1,
                                                  batch_first=True)
        self.head = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, n_speakers))

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.prenet(mels)).mean(dim=1))


def simple_model(x_train: list[np.ndarray], y_train: np.ndarray, x_test: list[np.ndarray], y_test: np.ndarray,
                 steps: int, seed: int) -> float:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Simple(int(max(y_train.max(), y_test.max())) + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    warmup = min(1000, steps // 2)

    def lr_lambda(step: int) -> float:
        if step < warmup:
            return step / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(steps):
        idx = rng.integers(len(x_train), size=32)
        batch = np.full((32, CROP, 40), PAD_VALUE, dtype=np.float32)
        for row, i in enumerate(idx):
            x = x_train[i]
            start = rng.integers(0, max(1, len(x) - CROP + 1))
            crop = x[start:start + CROP]
            batch[row, :len(crop)] = crop
        loss = loss_fn(model(torch.from_numpy(batch)), torch.from_numpy(y_train[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():  # whole utterances, one at a time, as HW4's inference does
        preds = [int(model(torch.from_numpy(x)[None]).argmax()) for x in x_test]
    return float((np.array(preds) == y_test).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="Use this data set instead of generating one.")
    parser.add_argument("--out", type=Path, help="Generate into this (new) folder and keep it.")
    parser.add_argument("--speakers", type=int, default=SynthSpec.speakers)
    parser.add_argument("--utterances", type=int, default=SynthSpec.utterances)
    parser.add_argument("--seed", type=int, default=SynthSpec.seed)
    parser.add_argument("--jobs", type=int, default=None, help="Generation processes (default: CPUs).")
    parser.add_argument("--steps", type=int, default=2000, help="Simple-model training steps.")
    parser.add_argument("--repeats", type=int, default=3,
                        help="Simple-model trainings (torch seeds seed, seed+1, ...): one run varies a lot.")
    parser.add_argument("--skip-simple", action="store_true", help="Logistic regression only.")
    args = parser.parse_args()
    torch.set_num_threads(2)

    with tempfile.TemporaryDirectory(prefix="synth-difficulty-") as tmp:
        root = args.data
        if root is None:
            spec = SynthSpec(speakers=args.speakers, utterances=args.utterances, seed=args.seed)
            start = time.perf_counter()
            root = generate_corpus(args.out or Path(tmp) / "corpus", spec, jobs=args.jobs)
            print(f"generation: {time.perf_counter() - start:.1f} s ({spec.key()}, {root})", flush=True)
        x_train, y_train, x_test, y_test = load(root)
        print(f"data: {len(x_train)} train / {len(x_test)} test utterances, "
              f"{len(set(y_train.tolist()))} speakers (chance {1 / len(set(y_train.tolist())):.1%})", flush=True)
        start = time.perf_counter()
        acc = logistic_regression(x_train, y_train, x_test, y_test)
        print(f"logistic regression (mean+std log-mel): {acc:.1%} test accuracy "
              f"[{time.perf_counter() - start:.0f} s]", flush=True)
        if not args.skip_simple:
            accs = []
            for seed in range(args.seed, args.seed + args.repeats):
                start = time.perf_counter()
                accs.append(simple_model(x_train, y_train, x_test, y_test, args.steps, seed))
                print(f"Simple model ({args.steps} steps, torch seed {seed}): {accs[-1]:.1%} test accuracy "
                      f"[{time.perf_counter() - start:.0f} s]", flush=True)
            if len(accs) > 1:
                print(f"Simple model: mean {np.mean(accs):.1%}, range {min(accs):.1%}-{max(accs):.1%} "
                      f"over {len(accs)} seeds", flush=True)


if __name__ == "__main__":
    main()
