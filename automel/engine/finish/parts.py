"""What the steps after the search hand each other: the chosen members, their refits, the exported parts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from optuna.trial import FrozenTrial

from automel.model_config import ModelConfig

Note = Callable[[str], None]  # progress lines for the caller (library code never prints)


@dataclass
class Member:
    """One configuration of the export (from :mod:`.select`): the trial it comes from and the weight it gets."""

    trial: FrozenTrial
    weight: float
    model: torch.nn.Module | None = None  # the trial's own weights (None when they were not kept)
    record: ModelConfig | None = None


@dataclass
class Fitted:
    """A member's refit models (from :mod:`.refit`): one per seed, each with its log rows (``metrics.jsonl``)."""

    member: Member
    models: list[tuple[torch.nn.Module, ModelConfig]]
    curves: list[list[dict[str, Any]]] = field(default_factory=list)


@dataclass
class Part:
    """One exported model (for :mod:`.write`): its weights, its config, its entry in ``export.json``, its log rows."""

    model: torch.nn.Module
    record: ModelConfig
    info: dict[str, Any]
    curve: list[dict[str, Any]] = field(default_factory=list)


def parts_of(members: list[Member], fitted: list[Fitted] | None) -> list[Part]:
    """One part per exported model: the refit models (seeds share their member's weight), else the trials'."""
    from automel.errors import StudyError

    parts = []
    if fitted is None:
        for m in members:
            if m.model is None or m.record is None:
                raise StudyError(f"trial {m.trial.number}'s weights were not kept; refit it instead")
            parts.append(Part(m.model, m.record, {"trial": m.trial.number, "weight": m.weight, "refit": False}))
        return parts
    for f in fitted:
        curves = f.curves or [[] for _ in f.models]
        for (model, record), curve in zip(f.models, curves, strict=True):
            parts.append(Part(model, record, {"trial": f.member.trial.number, "weight": f.member.weight / len(f.models),
                                              "refit": "refit" in record.extra,
                                              "seed": record.extra.get("refit", {}).get("seed")}, curve))
    return parts
