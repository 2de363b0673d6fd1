"""Training steps/s per encoder, this checkout against an earlier revision, side by side in one run.

    AUTOMEL_BENCH_THREADS=1 .venv/bin/python bench/fastpath.py [--base REV] [--configs a,b] [--seconds 8]

The earlier revision is checked out into a git worktree under ``$AUTOMEL_BENCH_HOME`` and each
measurement runs in its own process with that tree (and its ``automel-ecapa`` sources) first on
``PYTHONPATH``; the two revisions alternate per configuration so that machine noise hits both alike.
Every measurement is :func:`automel.train.loop.fit` itself (batching, augmentation off, AdamW, clipping,
no validation) on the default synthetic corpus, pooling attentive-stats and head AM-softmax:

- ``seg128``: 32 crops of 128 frames, the training default: nearly every batch is unpadded;
- ``seg384``: 32 crops of 384 frames, longer than many utterances: nearly every batch is padded.

Prints one JSON line per (configuration, crop length) with both revisions' steps/s and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import BENCH_HOME, ROOT, machine, report

COMMON: dict[str, Any] = {"pooling": "attentive-stats", "head": "am-softmax"}
CONFIGS: dict[str, dict[str, Any]] = {
    # The largest CPU-scale search sizes of each encoder, then the preset (or paper) sizes.
    "transformer-cpu": {"encoder": "transformer", "encoder.transformer.d_model": 96,
                        "encoder.transformer.dim_feedforward": 384, "encoder.transformer.num_layers": 2},
    "transformer-medium": {"encoder": "transformer", "encoder.transformer.d_model": 256,
                           "encoder.transformer.nhead": 4, "encoder.transformer.dim_feedforward": 1024,
                           "encoder.transformer.num_layers": 3},
    "conformer-cpu": {"encoder": "conformer", "encoder.conformer.d_model": 96,
                      "encoder.conformer.dim_feedforward": 384, "encoder.conformer.num_layers": 2},
    "conformer-hard": {"encoder": "conformer"},
    "ecapa-cpu": {"encoder": "ecapa-tdnn", "encoder.ecapa-tdnn.channels": 128, "encoder.ecapa-tdnn.scale": 8,
                  "encoder.ecapa-tdnn.num_blocks": 3, "encoder.ecapa-tdnn.se_channels": 64,
                  "encoder.ecapa-tdnn.mfa_channels": 384},
    "ecapa-paper": {"encoder": "ecapa-tdnn"},
    "tdnn": {"encoder": "tdnn"},
}
SEGMENTS = {"seg128": 128, "seg384": 384}


def measure(config: str, segment: int, seconds: float) -> float:
    """Steps/s of ``fit`` between its first and last progress report (the first steps warm up)."""
    import torch

    from automel.data.synth import default_corpus
    from automel.model import build_model
    from automel.train.config import RunSettings, TrainParams
    from automel.train.fit import full_params, open_workspace
    from automel.train.loop import fit

    work = open_workspace(default_corpus(BENCH_HOME), BENCH_HOME)
    params = full_params({**CONFIGS[config], **COMMON, "train.segment_len": segment})
    marks: list[tuple[int, float]] = []

    def progress(step: int, metrics: dict[str, float]) -> None:
        marks.append((step, time.perf_counter()))

    # A first short run finds the pace, a second one lasts about ``seconds``.
    steps = 6
    for _ in range(2):
        marks.clear()
        torch.manual_seed(0)
        model = build_model(params, work.store.n_mels, work.store.num_classes)
        settings = RunSettings(steps=steps, log_every=1, validate=False, seed=0)
        fit(model, work.store, work.split, TrainParams.from_params(params), settings, torch.device("cpu"),
            on_progress=progress)
        rate = (marks[-1][0] - marks[1][0]) / (marks[-1][1] - marks[1][1])
        steps = max(8, int(rate * seconds))
    return rate


def worker_env(tree: Path) -> dict[str, str]:
    paths = [str(tree), str(tree / "plugins" / "automel-ecapa" / "src")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}


def run_worker(tree: Path, config: str, segment: int, seconds: float) -> float:
    command = [sys.executable, __file__, "--worker", config, str(segment), str(seconds)]
    done = subprocess.run(command, env=worker_env(tree), capture_output=True, text=True, check=False,
                          cwd=Path(__file__).parent)
    if done.returncode:
        raise SystemExit(f"{tree} {config}: {done.stderr.strip().splitlines()[-1]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["steps_per_s"])


def base_tree(rev: str) -> Path:
    tree = BENCH_HOME / f"worktree-{rev}"
    if not tree.exists():
        BENCH_HOME.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), rev], check=True,
                       capture_output=True)
    return tree


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        print(json.dumps({"steps_per_s": measure(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))}))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="524148b", help="the revision to compare against")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--segments", default=",".join(SEGMENTS))
    parser.add_argument("--seconds", type=float, default=8.0)
    args = parser.parse_args()
    base = base_tree(args.base)
    for config in args.configs.split(","):
        for segment_name in args.segments.split(","):
            segment = SEGMENTS[segment_name]
            before = run_worker(base, config, segment, args.seconds)
            after = run_worker(ROOT, config, segment, args.seconds)
            report("fastpath", machine=machine(), config=config, crops=segment_name, base=args.base,
                   before_steps_per_s=round(before, 2), after_steps_per_s=round(after, 2),
                   speedup=round(after / before, 2))


if __name__ == "__main__":
    main()
