"""Long inputs: prediction time and peak memory against the input's length, windowed and whole, side by side.

    AUTOMEL_BENCH_THREADS=1 .venv/bin/python bench/long_inputs.py [--minutes 0.5,2,8,32] \\
        [--encoders tdnn,transformer] [--whole-limit tdnn=32,transformer=2] [--timeout 300]

For each encoder (its built-in defaults, attentive statistics, AM-softmax; random weights: the cost does not
depend on them) and each length, a fresh Python process builds the model folder, loads it with
``automel.load`` and predicts one random log-mel utterance of that many minutes (100 frames a second,
40 bins): once as automel does now (``windowed``: overlapping windows of :mod:`automel.long_inputs`, their
outputs averaged) and once whole (``whole``: the window made larger than the input, as before issue 22),
only up to ``--whole-limit`` minutes, since beyond that the whole run needs more memory than the machine
is worth risking. Each child reports its wall seconds for the prediction (a short warm-up run first) and
its peak resident memory (``ru_maxrss``). Prints one JSON line per run and a Markdown table with the
windowed/whole ratios, then the machine line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, machine, report

FRAMES_PER_MINUTE = 6000


def child(encoder: str, minutes: float, mode: str) -> None:
    import numpy as np
    import torch

    import automel
    import automel.inference as inference
    from automel.data.frontend import FbankParams
    from automel.model import build_model
    from automel.model_config import ModelConfig
    from automel.model_folder import write_run_dir
    from automel.train.fit import full_params

    params = full_params({"encoder": encoder, "pooling": "attentive-stats", "head": "am-softmax"})
    torch.manual_seed(0)
    model = build_model(params, 40, 10).eval()
    folder = Path(tempfile.mkdtemp()) / "model"
    record = ModelConfig(params, 40, tuple(f"s{i}" for i in range(10)),
                       {"name": "bench", "kind": "prepared", "features": FbankParams(n_mels=40).to_json()},
                       {"valid_acc": 0.0}, {})
    write_run_dir(folder, model.state_dict(), record, [], None)
    if mode == "whole":
        inference.window_frames = lambda _params: 10**9  # type: ignore[assignment]  # before issue 22
    loaded = automel.load(folder, device="cpu")
    rng = np.random.default_rng(0)
    loaded.predict_proba(rng.normal(-4.0, 2.0, (300, 40)).astype(np.float32))  # warm-up
    x = rng.normal(-4.0, 2.0, (int(minutes * FRAMES_PER_MINUTE), 40)).astype(np.float32)
    started = time.perf_counter()
    probabilities = loaded.predict_proba(x)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(seconds, 3), "peak_rss_mb": round(peak_mb, 1),
                      "finite": bool(np.isfinite(probabilities).all())}))


def run_one(encoder: str, minutes: float, mode: str, timeout: float) -> dict[str, object]:
    command = [sys.executable, __file__, "--child", encoder, str(minutes), mode]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=os.environ)
    except subprocess.TimeoutExpired:
        return {"status": f"over {timeout:.0f} s"}
    if done.returncode != 0:
        return {"status": f"exit {done.returncode}: {(done.stderr.strip().splitlines() or ['?'])[-1][:120]}"}
    return {"status": "ok", **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--minutes", default="0.5,2,8,32")
    parser.add_argument("--encoders", default="tdnn,transformer")
    parser.add_argument("--whole-limit", default="tdnn=32,transformer=2")
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], float(args.child[1]), args.child[2])
        return
    limits = {k: float(v) for k, v in (item.split("=") for item in args.whole_limit.split(","))}
    rows = []
    for encoder in args.encoders.split(","):
        for minutes in (float(m) for m in args.minutes.split(",")):
            line: dict[str, object] = {"encoder": encoder, "minutes": minutes}
            for mode in ("windowed", "whole"):
                if mode == "whole" and minutes > limits.get(encoder, 0.0):
                    line[mode] = {"status": "not run (over --whole-limit)"}
                    continue
                line[mode] = run_one(encoder, minutes, mode, args.timeout)
            report("long_inputs", **line)
            rows.append(line)
    print("\n| encoder | minutes | windowed s | windowed peak MB | whole s | whole peak MB | time whole/windowed |"
          " memory whole/windowed |\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for line in rows:
        w, h = line["windowed"], line["whole"]
        assert isinstance(w, dict) and isinstance(h, dict)
        cells = [_cell(w, "seconds"), _cell(w, "peak_rss_mb"), _cell(h, "seconds"), _cell(h, "peak_rss_mb")]
        ratios = [_ratio(h, w, "seconds"), _ratio(h, w, "peak_rss_mb")]
        print(f"| {line['encoder']} | {line['minutes']:g} | " + " | ".join(cells + ratios) + " |")
    print(f"\n{machine()}")


def _cell(result: dict[str, object], key: str) -> str:
    return f"{result[key]:g}" if result.get("status") == "ok" else str(result.get("status"))


def _ratio(whole: dict[str, object], windowed: dict[str, object], key: str) -> str:
    if whole.get("status") != "ok" or windowed.get("status") != "ok":
        return ""
    return f"{float(whole[key]) / float(windowed[key]):.2f}"  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
