"""CPU latency of the exported presets: onnxruntime (and TorchScript) against PyTorch eager, one thread.

    cd bench && ../.venv/bin/python export_latency.py [--presets simple,medium,hard,boss] [--runs 21]
        [--batches 1,64] [--torchscript] [--masked]

For each preset (random weights: latency does not depend on them) and batch size, ``--frames`` frames per
utterance (300 = 3 s at the 10 ms hop), 600 classes (HW4's speakers): the median of ``--runs`` timed calls
after ``--warmup`` untimed ones. Every runtime computes the same thing, logits and the L2-normalised
embedding (:func:`automel.exporting.embedding_and_logits`); the runtimes take turns call by call, so a
busy machine slows them alike. torch runs with ``torch.set_num_threads(1)`` under ``inference_mode``,
onnxruntime with ``intra_op_num_threads = inter_op_num_threads = 1``. Eager PyTorch takes the unpadded fast
path (no attention mask) on these unpadded batches; an exported file always takes the masked path, which
``--masked`` times in eager PyTorch too (``torch-masked``).

Prints one JSON line per (preset, batch, runtime) and one per (preset, batch) with the ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from _common import machine, report

from automel.exporting import embedding_and_logits, export_model, load_exported
from automel.layers import always_masked
from automel.model import build_model
from automel.presets import preset_params

N_MELS, CLASSES = 40, 600


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000.0


def _eager(model: torch.nn.Module, x: torch.Tensor, mask: torch.Tensor, masked: bool = False) -> object:
    with torch.inference_mode(), always_masked() if masked else contextlib.nullcontext():
        return embedding_and_logits(model, x, mask)


def _medians(calls: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict[str, float]:
    """Median milliseconds per call; the calls take turns, so load on the machine hits them alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(warmup + runs):
        for name, call in calls.items():
            ms = _timed(call)
            if i >= warmup:
                times[name].append(ms)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--presets", default="simple,medium,hard,boss")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--torchscript", action="store_true", help="time model.ts too")
    parser.add_argument("--masked", action="store_true",
                        help="time eager PyTorch on the masked path too (what the files run)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    formats = ["onnx", "torchscript"] if args.torchscript else ["onnx"]
    for preset in args.presets.split(","):
        model = build_model(preset_params(preset), N_MELS, CLASSES).eval()
        params = sum(p.numel() for p in model.parameters())
        with tempfile.TemporaryDirectory() as tmp:
            files = export_model(model, Path(tmp), formats, N_MELS, what=preset)
            runners = {"onnxruntime": load_exported(files["onnx"], threads=1)}
            if args.torchscript:
                runners["torchscript"] = load_exported(files["torchscript"])
            for batch in (int(b) for b in args.batches.split(",")):
                x = torch.randn(batch, args.frames, N_MELS)
                mask = torch.ones(batch, args.frames, dtype=torch.bool)
                calls: dict[str, Callable[[], object]] = {"torch": functools.partial(_eager, model, x, mask)}
                if args.masked:
                    calls["torch-masked"] = functools.partial(_eager, model, x, mask, True)
                for name, runner in runners.items():
                    calls[name] = functools.partial(runner, x.numpy(), mask.numpy())
                medians = _medians(calls, args.runs, args.warmup)
                for name, ms in medians.items():
                    report("export_latency", machine=machine(), preset=preset, batch=batch, frames=args.frames,
                           runtime=name, median_ms=round(ms, 2), runs=args.runs, params=params)
                report("export_latency_ratio", preset=preset, batch=batch, frames=args.frames,
                       **{f"{name}_ms": round(ms, 2) for name, ms in medians.items()},
                       **{f"torch_over_{name}": round(medians["torch"] / ms, 2)
                          for name, ms in medians.items() if name != "torch"})


if __name__ == "__main__":
    main()
