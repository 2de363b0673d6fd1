"""A portfolio warm start: the first trials of a new study are known-good, diverse configurations.

AutoML systems start from configurations that did well before (Feurer et al. 2015, "Efficient and
robust automated machine learning"; AutoGluon's presets) instead of random draws, so even a short budget
holds one strong model. The entries here are the field's standard recipes at the study's scale:

- a TDNN (x-vector) with attentive statistics and AM-softmax: the classic speaker recipe, cheap on CPU;
- the course's ``boss`` level (Conformer + self-attentive pooling + AM-softmax), sized for the scale;
- a compact pre-norm Transformer with attentive statistics and AM-softmax.

Each carries the augmentation that real data needs (random crops always; every family of
:mod:`automel.data.augment` at ``light``: reverberation, noise, the channel, SpecAugment; to be retuned from
a benchmark). A plugin package may contribute its own entries with a ``portfolio()`` classmethod on its
plugin class (see :meth:`automel.plugin.Plugin.portfolio`). Entries are enqueued with
``study.enqueue_trial``, so the sampler learns from them like from any other trial; an entry naming a
plugin outside the study's space is skipped, and a value outside a parameter's range is sampled instead.
"""

from __future__ import annotations

from typing import Any

import optuna

from automel.engine.space import SearchSpace
from automel.plugin import KINDS, by_scale, using_search_scale
from automel.registry import Registry

# Lower priority runs first. Plugin entries without a priority come after the built-ins.
PLUGIN_DEFAULT_PRIORITY = 10.0
PRIORITY = "priority"


def _train(lr: float, batch: int, segment: int, normalize: str = "global", augment: str = "light") -> dict[str, Any]:
    return {"train.lr": lr, "train.warmup": 0.1, "train.batch_size": batch, "train.segment_len": segment,
            "train.weight_decay": 1e-3, "train.normalize": normalize, "train.specaugment": augment,
            "train.channel_aug": augment, "train.noise_aug": augment, "train.reverb_aug": augment}


def _margin_head(name: str, margin: float) -> dict[str, Any]:
    return {"head": name, f"head.{name}.embed_dim": 192, f"head.{name}.scale": 30.0, f"head.{name}.margin": margin}


def builtin_entries() -> list[dict[str, Any]]:
    """The built-in portfolio at the current search scale (:func:`automel.plugin.by_scale`)."""
    return [
        {PRIORITY: 1.0, "encoder": "tdnn", "encoder.tdnn.channels": by_scale(256, 512),
         "encoder.tdnn.out_channels": by_scale(512, 1500), "encoder.tdnn.dropout": 0.1,
         "pooling": "attentive-stats", "pooling.attentive-stats.hidden": 128, **_margin_head("am-softmax", 0.2),
         **_train(2e-3, 32, by_scale(128, 192))},
        {PRIORITY: 3.0, "encoder": "conformer", "encoder.conformer.d_model": by_scale(96, 144),
         "encoder.conformer.nhead": 4, "encoder.conformer.dim_feedforward": by_scale(384, 576),
         "encoder.conformer.kernel_size": 15, "encoder.conformer.num_layers": by_scale(2, 3),
         "encoder.conformer.dropout": 0.1, "pooling": "self-attention", "pooling.self-attention.hidden": 64,
         **_margin_head("am-softmax", 0.2), **_train(1e-3, 32, by_scale(128, 192))},
        {PRIORITY: 4.0, "encoder": "transformer", "encoder.transformer.d_model": by_scale(96, 256),
         "encoder.transformer.nhead": 4, "encoder.transformer.dim_feedforward": by_scale(256, 1024),
         "encoder.transformer.num_layers": 2, "encoder.transformer.dropout": 0.1,
         "encoder.transformer.norm_first": True, "pooling": "attentive-stats", "pooling.attentive-stats.hidden": 128,
         **_margin_head("am-softmax", 0.2), **_train(1e-3, 32, by_scale(128, 192))},
    ]


def portfolio(space: SearchSpace, scale: str, registry: Registry) -> list[dict[str, Any]]:
    """The entries that fit ``space``, best first, each a mapping of trial parameters."""
    with using_search_scale(scale):
        entries = builtin_entries()
        for kind in KINDS:
            for name in space.names(kind):
                for entry in registry.get(kind, name).portfolio():
                    entries.append({PRIORITY: PLUGIN_DEFAULT_PRIORITY, **entry})
    fitting = [e for e in entries if all(e.get(kind) in space.names(kind) for kind in KINDS)]
    fitting.sort(key=lambda e: float(e[PRIORITY]))
    return [{k: v for k, v in e.items() if k != PRIORITY} for e in fitting]


def enqueue_portfolio(study: optuna.Study, space: SearchSpace, scale: str, registry: Registry) -> int:
    """Queue the portfolio as the study's first trials; returns how many were queued."""
    entries = portfolio(space, scale, registry)
    for entry in entries:
        study.enqueue_trial(entry, user_attrs={"portfolio": True}, skip_if_exists=True)
    return len(entries)
