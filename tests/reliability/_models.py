"""Small model folders for the reliability tests: built in well under a second, no training needed.

A random Transformer / mean / AM-softmax model with the record ``automel train`` writes on prepared audio
(so it takes audio files through the recorded front end as well as ``.pt`` features).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from automel.data.frontend import FbankParams
from automel.model import build_model
from automel.model_config import ModelConfig
from automel.model_folder import write_run_dir
from automel.train.fit import full_params

N_MELS = 40
SPEAKERS = ("alice", "bob", "carol")
TINY: dict[str, Any] = {"encoder": "transformer", "encoder.transformer.d_model": 16, "encoder.transformer.nhead": 2,
                        "encoder.transformer.dim_feedforward": 32, "pooling": "mean", "head": "am-softmax",
                        "head.am-softmax.embed_dim": 8, "train.normalize": "utterance"}


def make_model(out: Path, **params: Any) -> Path:
    """A run directory of a tiny random model; ``params`` update the model's parameters."""
    full = full_params({**TINY, **params})
    torch.manual_seed(0)
    model = build_model(full, N_MELS, len(SPEAKERS)).eval()
    dataset = {"name": "tiny", "kind": "prepared", "features": FbankParams(n_mels=N_MELS).to_json()}
    return write_run_dir(out, model.state_dict(), ModelConfig(full, N_MELS, SPEAKERS, dataset, {"valid_acc": 0.5}, {}),
                         [], None)


def edit_config(model: Path, change: Any) -> None:
    """Rewrite ``model``'s config.json with ``change(config)`` applied (it edits the dict in place)."""
    path = model / "config.json"
    config = json.loads(path.read_text())
    change(config)
    path.write_text(json.dumps(config))


def write_tone(path: Path, seconds: float, scale: float = 0.3, rate: int = 16_000, subtype: str | None = None,
               fmt: str | None = None) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    wave = scale * np.sin(2 * np.pi * 220.0 * t) + scale * np.random.default_rng(0).normal(0.0, 0.05, t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.astype(np.float64 if subtype == "DOUBLE" else np.float32), rate,
             subtype=subtype, format=fmt)
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes: compare before and after to prove nothing changed."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
