"""Training parameters (searchable, recorded as ``train.*`` trial parameters) and run settings (not searched)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from automel.data.augment import LEVELS as AUGMENT_LEVELS
from automel.errors import ConfigError
from automel.normalize import DEFAULT_NORMALIZE, NORMALIZE_MODES
from automel.train.shift import OBJECTIVES

PREFIX = "train."


@dataclass(frozen=True)
class TrainParams:
    """What a search samples besides the model: recorded as ``train.lr``, ``train.batch_size``, …

    ``warmup`` is the fraction of steps spent warming the learning rate up linearly before the cosine
    decay (the course used 1,000 of 70,000 steps); ``warmup_steps`` > 0 replaces it with that many steps,
    capped at half the run (the course's warm-up whatever the run's length). ``normalize`` is the feature
    normalisation in front of the encoder: per-dimension mean/variance of the training set (``global``),
    per utterance (CMVN), or ``none`` (the course sample). ``reverb_aug``, ``noise_aug``, ``channel_aug`` and
    ``specaugment`` are the strengths (``off``, ``light``, ``strong``) of the training-batch augmentation in
    :mod:`automel.data.augment` (rooms, noise, the channel and its bandwidth, SpecAugment masks).
    """

    lr: float = 1e-3
    warmup: float = 0.05
    warmup_steps: int = 0  # 0: use the ``warmup`` fraction
    batch_size: int = 32
    segment_len: int = 128
    weight_decay: float = 0.01
    normalize: str = DEFAULT_NORMALIZE  # one of NORMALIZE_MODES
    specaugment: str = "off"  # one of AUGMENT_LEVELS
    channel_aug: str = "off"  # one of AUGMENT_LEVELS
    noise_aug: str = "off"  # one of AUGMENT_LEVELS
    reverb_aug: str = "off"  # one of AUGMENT_LEVELS

    def __post_init__(self) -> None:
        checks = {"lr": self.lr > 0, "warmup": 0 <= self.warmup < 1, "batch_size": self.batch_size >= 1,
                  "warmup_steps": self.warmup_steps >= 0,
                  "segment_len": self.segment_len >= 8, "weight_decay": self.weight_decay >= 0,
                  "normalize": self.normalize in NORMALIZE_MODES,
                  "specaugment": self.specaugment in AUGMENT_LEVELS, "channel_aug": self.channel_aug in AUGMENT_LEVELS,
                  "noise_aug": self.noise_aug in AUGMENT_LEVELS, "reverb_aug": self.reverb_aug in AUGMENT_LEVELS}
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
            for name in ("batch_size", "segment_len", "warmup_steps"):
                if name in values:
                    values[name] = int(values[name])
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid training parameters {values}: {exc}") from None

    def to_params(self) -> dict[str, Any]:
        return {PREFIX + k: v for k, v in dataclasses.asdict(self).items()}

    def warmup_for(self, steps: int) -> int:
        """Warm-up steps in a run of ``steps``: ``warmup_steps`` capped at half the run, else the fraction."""
        return min(self.warmup_steps, steps // 2) if self.warmup_steps else int(self.warmup * steps)


@dataclass(frozen=True)
class RunSettings:
    """How long and where to train; never searched.

    ``valid_every`` steps the loop validates on full-length utterances and calls the callbacks.
    ``amp`` enables bf16 (or fp16 with loss scaling) autocast on CUDA; CPU always runs float32.
    ``noise_bank`` and ``rir_bank`` are the ``bank.npy`` of converted ``--noise`` and ``--rir`` folders
    (:mod:`automel.data.augment.banks`), which ``train.noise_aug`` and ``train.reverb_aug`` draw from.
    ``validate`` False trains without any validation and keeps the last weights (a refit on all labelled
    data has nothing held out). ``deadline`` (a ``time.monotonic()`` value) ends the run early, at the
    next logging step after it passes, and the learning rate decays to zero by it whatever the machine's
    speed (:mod:`automel.train.schedule`). ``average`` snapshots of the schedule's tail are averaged
    (:mod:`automel.train.averaging`; 0 or 1: none) and the average replaces the weights where validation
    shows it better; a run without validation uses it only when ``average_trusted`` (a validated run of the
    same configuration found it better than its last weights). ``deterministic`` asks PyTorch for
    deterministic kernels only (and no TF32, no cuDNN autotuning), so one seed gives one result on a GPU
    too, at a cost in speed.
    """

    steps: int = 2000
    valid_every: int = 200
    grad_clip: float = 5.0
    seed: int = 0
    amp: bool = True
    compile: bool = False
    noise_bank: str | None = None
    rir_bank: str | None = None
    log_every: int = 25
    validate: bool = True
    deadline: float | None = None
    deterministic: bool = False
    average: int = 8
    average_trusted: bool = False
    large_margin: float = 0.0  # the last fraction of the run is a large-margin finish (train/large_margin.py)
    objective: str = "clean"  # "robust": validation also scores shifted copies (train/shift.py)

    def __post_init__(self) -> None:
        if self.steps < 1 or self.valid_every < 1 or self.log_every < 1:
            raise ConfigError("steps, valid_every and log_every must be positive")
        if not 0.0 <= self.large_margin < 1.0:
            raise ConfigError(f"large_margin = {self.large_margin} must be a fraction of the run in [0, 1)")
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective = {self.objective!r} must be one of: {', '.join(OBJECTIVES)}")
        if self.average < 0:
            raise ConfigError(f"average = {self.average} must be 0 (off) or a number of snapshots")
