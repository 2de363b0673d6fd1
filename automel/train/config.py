"""Training parameters (searchable, recorded as ``train.*`` trial parameters) and run settings (not searched)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from automel.errors import ConfigError
from automel.normalize import DEFAULT_NORMALIZE

PREFIX = "train."
NORMALIZE_MODES = ("none", "global", "utterance")


@dataclass(frozen=True)
class TrainParams:
    """What a search samples besides the model: recorded as ``train.lr``, ``train.batch_size``, …

    ``warmup`` is the fraction of steps spent warming the learning rate up linearly before the cosine
    decay (the course used 1,000 of 70,000 steps). ``normalize`` is the feature normalisation in front of
    the encoder: per-dimension mean/variance of the training set (``global``), per utterance (CMVN), or
    ``none`` (the course sample).
    """

    lr: float = 1e-3
    warmup: float = 0.05
    batch_size: int = 32
    segment_len: int = 128
    weight_decay: float = 0.01
    normalize: str = DEFAULT_NORMALIZE  # one of NORMALIZE_MODES

    def __post_init__(self) -> None:
        checks = {"lr": self.lr > 0, "warmup": 0 <= self.warmup < 1, "batch_size": self.batch_size >= 1,
                  "segment_len": self.segment_len >= 8, "weight_decay": self.weight_decay >= 0,
                  "normalize": self.normalize in NORMALIZE_MODES}
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"train.{name} = {getattr(self, name)!r} is out of range")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> TrainParams:
        fields = {f.name: f.type for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in params.items():
            if key.startswith(PREFIX):
                name = key[len(PREFIX) :]
                if name not in fields:
                    raise ConfigError(f"unknown training parameter '{key}' (known: {', '.join(fields)})")
                values[name] = value
        try:
            for name in ("batch_size", "segment_len"):
                if name in values:
                    values[name] = int(values[name])
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid training parameters {values}: {exc}") from None

    def to_params(self) -> dict[str, Any]:
        return {PREFIX + k: v for k, v in dataclasses.asdict(self).items()}


@dataclass(frozen=True)
class RunSettings:
    """How long and where to train; never searched.

    ``valid_every`` steps the loop validates on full-length utterances and calls the callbacks.
    ``amp`` enables bf16 (or fp16 with loss scaling) autocast on CUDA; CPU always runs float32.
    """

    steps: int = 2000
    valid_every: int = 200
    grad_clip: float = 5.0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    compile: bool = False
    log_every: int = 25

    def __post_init__(self) -> None:
        if self.steps < 1 or self.valid_every < 1 or self.log_every < 1:
            raise ConfigError("steps, valid_every and log_every must be positive")
