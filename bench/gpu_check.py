"""The GPU check behind ``bench/gpu_check.sh``: one process, JSON lines into ``--out``, at most ~8 minutes.

    python3 bench/gpu_check.py --out DIR [--device cuda] [--seconds 3] [--search-seconds 60]
    python3 bench/gpu_check.py --out DIR --device cpu --smoke     # the same code paths, tiny, on a CPU

What it measures (one JSON object per line in ``DIR/gpu_check.jsonl``, also printed):

- ``train``: steps/s, validation seconds, peak and leftover memory, per preset (simple, medium, hard,
  boss) and ECAPA-TDNN (the paper's C = 512), AMP on and off, 64 crops x 256 frames;
- ``syncs``: host-device synchronisations per training batch (``torch.cuda.set_sync_debug_mode``, counted
  over cutting the batch and one optimisation step); the goal is 0;
- ``busy``: the fraction of wall time the GPU runs kernels during training (``torch.profiler``);
- ``fp16``: whether the boss model trains finite under fp16 autocast with loss scaling;
- ``course``: the Simple model's steps/s in automel's loop against the course's per-file DataLoader loop
  (``bench/course_pipeline.py``) on the same device; the goal is at least 3x;
- ``workers``: trials finished by a 1-worker and a 2-worker ``automel search`` on one GPU, same time limit.

The data is the default synthetic corpus, generated on first use under ``$AUTOMEL_BENCH_HOME``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _common import BENCH_HOME, default_corpus, machine

from automel.data.batching import RandomCrops
from automel.model import build_model
from automel.presets import preset_params
from automel.registry import Registry, build_registry
from automel.train.config import RunSettings, TrainParams
from automel.train.device import autocast_dtype, release_memory
from automel.train.fit import Workspace, full_params, open_workspace
from automel.train.loop import _Stepper, evaluate, fit

ECAPA = {"encoder": "ecapa-tdnn", "pooling": "attentive-stats", "head": "aam-softmax"}
MODELS: dict[str, dict[str, Any]] = {**{name: preset_params(name) for name in ("simple", "medium", "hard", "boss")},
                                     "ecapa": ECAPA}
BATCH, SEGMENT = 64, 256


class Out:
    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "gpu_check.jsonl"

    def __call__(self, check: str, **values: Any) -> None:
        line = json.dumps({"check": check, **values})
        print(line, flush=True)
        with self.path.open("a") as f:
            f.write(line + "\n")


def registry() -> Registry:
    """Built-ins plus ECAPA, also when ``automel-ecapa`` is importable but not pip-installed (no entry point)."""
    found = build_registry(autoload=True)
    if "ecapa-tdnn" not in found.names("encoder"):
        from automel_ecapa import EcapaTdnn

        found.register(EcapaTdnn)
    return found


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def memory(device: torch.device) -> tuple[float, float]:
    if device.type != "cuda":
        return 0.0, 0.0
    return torch.cuda.max_memory_allocated(device) / 2**20, torch.cuda.memory_allocated(device) / 2**20


def params_for(name: str, reg: Registry, smoke: bool) -> dict[str, Any]:
    params = full_params(MODELS[name], reg)
    if smoke:  # the same code paths at a CPU's size
        for key in [k for k in params if k.endswith(("num_layers", "num_blocks"))]:
            params[key] = 1
        for key in [k for k in params if k.endswith(("d_model", "channels"))]:
            params[key] = 32 if "ecapa" not in key else 64
        params.update({k: 2 for k in params if k.endswith("nhead")})
    return params


def train_speed(work: Workspace, name: str, amp: bool, device: torch.device, reg: Registry, seconds: float,
                smoke: bool, out: Out) -> None:
    params = params_for(name, reg, smoke)
    train = TrainParams.from_params({**params, "train.batch_size": BATCH, "train.segment_len": SEGMENT})
    model = build_model(params, work.store.n_mels, work.store.num_classes, reg)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    marks: list[tuple[int, float]] = []
    steps = 5
    for _ in range(2):  # a short run finds the pace, a second lasts about `seconds`
        marks.clear()
        settings = RunSettings(steps=steps, log_every=1, validate=False, amp=amp)
        fit(model, work.store, work.split, train, settings, device,
            on_progress=lambda step, m: marks.append((step, time.perf_counter())))
        rate = (marks[-1][0] - marks[1][0]) / (marks[-1][1] - marks[1][1])
        steps = max(8, int(rate * seconds))
    sync(device)
    started = time.perf_counter()
    evaluate(model, work.store, work.split.valid, device, autocast_dtype(device, amp))
    sync(device)
    valid_seconds = time.perf_counter() - started
    peak, _ = memory(device)
    model.cpu()
    del model
    release_memory(device)
    _, left = memory(device)
    out("train", model=name, amp=amp, steps_per_s=round(rate, 2), valid_seconds=round(valid_seconds, 3),
        valid_utterances=len(work.split.valid), peak_mib=round(peak), leftover_mib=round(left))


def train_speeds(work: Workspace, device: torch.device, reg: Registry, seconds: float, smoke: bool,
                 out: Out) -> None:
    for name in MODELS:
        for amp in (True, False):
            train_speed(work, name, amp, device, reg, seconds, smoke, out)


def stepper_for(work: Workspace, name: str, device: torch.device, reg: Registry, smoke: bool,
                amp_dtype: torch.dtype | None) -> tuple[_Stepper, RandomCrops]:
    params = params_for(name, reg, smoke)
    model = build_model(params, work.store.n_mels, work.store.num_classes, reg).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), fused=True if device.type == "cuda" else None)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    crops = RandomCrops(work.store.on(device), work.split.train, BATCH, SEGMENT, seed=0)
    return _Stepper(model, model, optimizer, scaler, 5.0, amp_dtype), crops


def syncs_per_batch(work: Workspace, device: torch.device, reg: Registry, smoke: bool, out: Out) -> None:
    if device.type != "cuda":
        out("syncs", skipped="needs CUDA (torch.cuda.set_sync_debug_mode)")
        return
    for name in ("boss", "ecapa"):
        stepper, crops = stepper_for(work, name, device, reg, smoke, autocast_dtype(device, True))
        for _ in range(3):
            stepper.step(next(crops))  # warm-up: allocator, cuDNN heuristics
        sync(device)
        batches = 10
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                for _ in range(batches):
                    stepper.step(next(crops))
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncing = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message).lower()]
        out("syncs", model=name, batches=batches, syncs_per_batch=len(syncing) / batches,
            first=syncing[:3])
        release_memory(device)


def busy_fraction(work: Workspace, device: torch.device, reg: Registry, smoke: bool, out: Out) -> None:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    for name in ("simple", "boss", "ecapa"):
        stepper, crops = stepper_for(work, name, device, reg, smoke, autocast_dtype(device, True))
        for _ in range(3):
            stepper.step(next(crops))
        sync(device)
        steps = 20 if not smoke else 3
        with profile(activities=activities) as prof:
            started = time.perf_counter()
            for _ in range(steps):
                stepper.step(next(crops))
            sync(device)
            wall = time.perf_counter() - started
        kernel_us = sum(e.self_device_time_total for e in prof.key_averages() if e.device_type.name == "CUDA")
        out("busy", model=name, steps=steps, wall_seconds=round(wall, 3),
            busy_fraction=round(kernel_us / 1e6 / wall, 3) if device.type == "cuda" else None)
        release_memory(device)


def fp16_finite(work: Workspace, device: torch.device, reg: Registry, smoke: bool, out: Out) -> None:
    dtype = torch.float16 if device.type == "cuda" else None
    stepper, crops = stepper_for(work, "boss", device, reg, smoke, dtype)
    losses = [stepper.step(next(crops))[0] for _ in range(30 if not smoke else 3)]
    stacked = torch.stack(losses).float().cpu()
    out("fp16", model="boss", dtype=str(dtype), steps=len(losses), finite=bool(torch.isfinite(stacked).all()),
        first_loss=round(float(stacked[0]), 4), last_loss=round(float(stacked[-1]), 4))
    release_memory(device)


def course_ratio(data: Path, work: Workspace, device: torch.device, seconds: float, out: Out) -> None:
    import torch.nn.functional as F
    from course_pipeline import Classifier, course_loader

    model = Classifier(n_spks=work.store.num_classes).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    batches = iter(course_loader(data))
    steps, started = 0, 0.0
    while True:
        try:
            mels, labels = next(batches)
        except StopIteration:
            batches = iter(course_loader(data))
            continue
        loss = F.cross_entropy(model(mels.to(device)), labels.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        steps += 1
        if steps == 5:
            sync(device)
            started = time.perf_counter()
        elif steps > 5 and time.perf_counter() - started > seconds:
            break
    sync(device)
    course = (steps - 5) / (time.perf_counter() - started)
    simple = preset_params("simple")
    marks: list[tuple[int, float]] = []
    model2 = build_model(simple, work.store.n_mels, work.store.num_classes)
    fit(model2, work.store, work.split, TrainParams.from_params(simple),
        RunSettings(steps=max(50, int(course * seconds * 4)), log_every=10, validate=False), device,
        on_progress=lambda step, m: marks.append((step, time.perf_counter())))
    ours = (marks[-1][0] - marks[0][0]) / (marks[-1][1] - marks[0][1])
    out("course", course_steps_per_s=round(course, 2), automel_steps_per_s=round(ours, 2),
        ratio=round(ours / course, 2), goal=3.0)


def workers(data: Path, seconds: float, out: Out, device: torch.device) -> None:
    for count in (1, 2):
        home = BENCH_HOME / f"gpu-check-workers-{count}"
        command = [sys.executable, "-m", "automel", "search", "--home", str(home), "--data", str(data),
                   "--study", f"workers{count}", "--time-limit", f"{int(seconds)}s", "--no-refit",
                   "--quality", "fast", "--workers", str(count), "--device", device.type]
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        trials = _finished_trials(home / "studies", f"workers{count}")
        out("workers", workers=count, rc=done.returncode, seconds=round(time.perf_counter() - started, 1),
            trials=trials, tail=done.stderr.strip().splitlines()[-1:] if done.returncode else [])


def _finished_trials(studies: Path, name: str) -> dict[str, int]:
    import optuna

    counts: dict[str, int] = {}
    for db in studies.rglob("*.db"):
        try:
            study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
        except KeyError:
            continue
        for trial in study.get_trials(deepcopy=False):
            counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--search-seconds", type=float, default=60.0)
    parser.add_argument("--smoke", action="store_true", help="tiny models: check the code paths on a CPU")
    parser.add_argument("--only", default="", help="comma-separated checks to run (default: all)")
    args = parser.parse_args()
    device, out, reg = torch.device(args.device), Out(args.out), registry()
    data = default_corpus()
    work = open_workspace(data, BENCH_HOME)
    out("machine", machine=machine(), device=str(device),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None, pid=os.getpid())
    checks: dict[str, Callable[[], None]] = {
        "syncs": lambda: syncs_per_batch(work, device, reg, args.smoke, out),
        "train": lambda: train_speeds(work, device, reg, args.seconds, args.smoke, out),
        "busy": lambda: busy_fraction(work, device, reg, args.smoke, out),
        "fp16": lambda: fp16_finite(work, device, reg, args.smoke, out),
        "course": lambda: course_ratio(data, work, device, args.seconds, out),
        "workers": lambda: workers(data, args.search_seconds, out, device),
    }
    for name in args.only.split(",") if args.only else checks:
        started = time.perf_counter()
        try:
            checks[name]()
        except Exception as exc:  # one failed check must not cost the others their figures
            out("error", check_name=name, error=f"{type(exc).__name__}: {exc}"[:500])
        out("done", check_name=name, seconds=round(time.perf_counter() - started, 1))


if __name__ == "__main__":
    main()
