"""Named model presets: the HW4 baselines as model parameters (plugin names + namespaced fields).

- ``simple``: the seed model exactly: Transformer d_model 80, 2 heads, feed-forward 256, 1 post-norm
  layer, dropout 0.1; mean pooling; the seed's ``Linear(80, 80) -> ReLU -> Linear(80, C)`` head.
- ``medium``: the same Transformer made larger (d_model 256, 4 heads, feed-forward 1024, 3 layers).
- ``hard``: Conformer (Gulati et al. 2020), d_model 144, 4 heads, feed-forward 576, kernel 15,
  3 layers; mean pooling, softmax head.
- ``boss``: the ``hard`` Conformer + self-attentive pooling + AM-softmax (s 30, m 0.2, margin warmed
  up over the first 20 % of training).

Every preset lists every field of its three plugins, so it reads as the full model and does not
drift when a plugin's defaults change. Training parameters (``train.*``) are added elsewhere.
"""

from __future__ import annotations

import copy
from typing import Any

from automel.errors import ConfigError

__all__ = ["PRESETS", "preset_params"]

_CONFORMER: dict[str, Any] = {
    "encoder": "conformer",
    "encoder.conformer.d_model": 144,
    "encoder.conformer.nhead": 4,
    "encoder.conformer.dim_feedforward": 576,
    "encoder.conformer.kernel_size": 15,
    "encoder.conformer.num_layers": 3,
    "encoder.conformer.dropout": 0.1,
}

PRESETS: dict[str, dict[str, Any]] = {
    "simple": {
        "encoder": "transformer",
        "encoder.transformer.d_model": 80,
        "encoder.transformer.nhead": 2,
        "encoder.transformer.dim_feedforward": 256,
        "encoder.transformer.num_layers": 1,
        "encoder.transformer.dropout": 0.1,
        "encoder.transformer.norm_first": False,
        "pooling": "mean",
        "head": "softmax",
        "head.softmax.hidden": 80,
        "head.softmax.dropout": 0.0,
    },
    "medium": {
        "encoder": "transformer",
        "encoder.transformer.d_model": 256,
        "encoder.transformer.nhead": 4,
        "encoder.transformer.dim_feedforward": 1024,
        "encoder.transformer.num_layers": 3,
        "encoder.transformer.dropout": 0.1,
        "encoder.transformer.norm_first": False,
        "pooling": "mean",
        "head": "softmax",
        "head.softmax.hidden": None,
        "head.softmax.dropout": 0.0,
    },
    "hard": {
        **_CONFORMER,
        "pooling": "mean",
        "head": "softmax",
        "head.softmax.hidden": None,
        "head.softmax.dropout": 0.0,
    },
    "boss": {
        **_CONFORMER,
        "pooling": "self-attention",
        "pooling.self-attention.hidden": 0,
        "head": "am-softmax",
        "head.am-softmax.embed_dim": 192,
        "head.am-softmax.scale": 30.0,
        "head.am-softmax.margin": 0.2,
        "head.am-softmax.margin_warmup": 0.2,
    },
}


# Training choices that belong to a level. The course's Simple model saw raw log-mel, no normalisation,
# and warmed its learning rate up over 1,000 steps. It needs that warm-up: on raw synthetic log-mel the
# post-norm Transformer sits on a plateau at chance for hundreds of steps, and a 5 % warm-up (100 of the
# default 2,000 steps) left it there for the whole run (BENCHMARKS.md). In steps, not a fraction, and
# capped at half the run (``TrainParams.warmup_for``): a long run keeps the course's 1,000 steps.
PRESET_TRAINING: dict[str, dict[str, Any]] = {"simple": {"train.normalize": "none", "train.warmup_steps": 1000}}


def preset_params(name: str) -> dict[str, Any]:
    """A copy of preset ``name``'s model parameters plus its training choices; :class:`ConfigError` if unknown."""
    try:
        return {**copy.deepcopy(PRESETS[name]), **PRESET_TRAINING.get(name, {})}
    except KeyError:
        raise ConfigError(f"unknown preset '{name}' (known: {', '.join(PRESETS)})") from None
