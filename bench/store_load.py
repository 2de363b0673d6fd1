"""Feature-store load time and memory at HW4 scale (600 speakers x 100 utterances by default).

Writes a synthetic HW4-layout set of random features once (the front end is not what is measured),
builds the cache once, then measures in a fresh process: opening the cached store, and reading every
frame once (a full pass, as the first epoch does), with the process's peak RSS against the raw bytes.

    .venv/bin/python bench/store_load.py [--speakers 600] [--utterances 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import BENCH_HOME, machine, report

from automel.data.layout import DatasetWriter


def write_dataset(out: Path, speakers: int, utterances: int) -> None:
    if (out / "metadata.json").exists():
        return
    rng = np.random.default_rng(0)
    with DatasetWriter(out, 40, {"kind": "synthetic", "name": out.name}) as writer:
        for s in range(speakers):
            for u in range(utterances):
                frames = int(rng.integers(200, 400))
                feats = (rng.standard_normal((frames, 40), dtype=np.float32) * 4 + 15).astype(np.float32)
                writer.add(f"spk{s:04d}", f"{u}", feats, test=u == 0)
        writer.commit()


def measure(data: Path, home: Path) -> dict[str, float]:
    """Runs in a fresh process so that RSS and time start from nothing."""
    from automel.data.store import open_store

    start = time.perf_counter()
    store = open_store(data, home)
    opened = time.perf_counter() - start
    start = time.perf_counter()
    total = 0.0
    chunk = 1 << 20
    for begin in range(0, store.features.shape[0], chunk):
        total += float(store.features[begin : begin + chunk].sum())
    scanned = time.perf_counter() - start
    raw = store.features.shape[0] * store.features.shape[1] * store.features.element_size()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"open_s": opened, "full_pass_s": scanned, "raw_bytes": raw, "peak_rss_bytes": peak,
            "utterances": len(store.paths)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--speakers", type=int, default=600)
    parser.add_argument("--utterances", type=int, default=100)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), Path(args.child[1]))))
        return
    data = BENCH_HOME / f"hw4scale-{args.speakers}x{args.utterances}"
    start = time.perf_counter()
    write_dataset(data, args.speakers, args.utterances)
    written = time.perf_counter() - start
    home = BENCH_HOME / "store-home"
    child = [sys.executable, __file__, "--child", str(data), str(home)]
    first = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout)
    cached = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout)
    report("store_load", machine=machine(), utterances=cached["utterances"], write_dataset_s=round(written, 1),
           first_build_s=round(first["open_s"], 2), cached_open_s=round(cached["open_s"], 3),
           cached_full_pass_s=round(cached["full_pass_s"], 2), raw_gib=round(cached["raw_bytes"] / 2**30, 3),
           peak_rss_gib=round(cached["peak_rss_bytes"] / 2**30, 3),
           rss_over_raw=round(cached["peak_rss_bytes"] / cached["raw_bytes"], 2))


if __name__ == "__main__":
    main()
