"""Attentive statistics pooling (ASP): attention-weighted mean and standard deviation.

Okabe, Koshinaka and Shinoda 2018, "Attentive Statistics Pooling for Deep Speaker Embedding"
(Interspeech 2018, arXiv 1803.10963), equations (5)-(9): a frame's score is
``v^T tanh(W h_t + b) + k`` (``Linear(D, hidden) -> tanh -> Linear(hidden, 1)``), softmax over the
real frames gives weights ``a_t``; the output is ``[mu ; sigma]`` with ``mu = sum a_t h_t`` and
``sigma = sqrt(max(sum a_t h_t^2 - mu^2, 1e-5))`` (the clamp keeps the square root's gradient
finite for a constant channel).

Shapes: ``x (B, T, D)``, ``mask (B, T)`` bool, True = real frame -> ``(B, 2D)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
import torch
from torch import Tensor, nn

from automel.layers import masked_fill_padding
from automel.plugin import PoolingPlugin
from automel.pooling.self_attention import attention_weights, score_network

__all__ = ["AttentiveStatsPool", "AttentiveStatsPooling", "AttentiveStatsPoolingConfig"]

HIDDEN_CHOICES = (64, 128, 256)
VARIANCE_FLOOR = 1e-5


@dataclass(frozen=True)
class AttentiveStatsPoolingConfig:
    """``hidden``: width of the attention MLP (``pooling.attentive-stats.hidden``)."""

    hidden: int = 128

    def __post_init__(self) -> None:
        if self.hidden < 1:
            raise ValueError(f"hidden={self.hidden} must be positive")


class AttentiveStatsPool(nn.Module):
    """``(B, T, D), (B, T) -> (B, 2D)``: weighted mean then weighted standard deviation."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.out_dim = 2 * in_dim
        self.score = score_network(in_dim, hidden)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = masked_fill_padding(x, mask)
        weights = attention_weights(self.score(x), mask)  # (B, T, 1)
        mean = (weights * x).sum(dim=1)
        second = (weights * x.pow(2)).sum(dim=1)
        std = torch.sqrt((second - mean.pow(2)).clamp(min=VARIANCE_FLOOR))
        return torch.cat([mean, std], dim=-1)


class AttentiveStatsPooling(PoolingPlugin):
    """Attentive statistics pooling: weighted mean and standard deviation, ``out_dim = 2 * in_dim``."""

    name = "attentive-stats"
    config_cls = AttentiveStatsPoolingConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> AttentiveStatsPoolingConfig:
        return AttentiveStatsPoolingConfig(
            hidden=trial.suggest_categorical(cls.param("hidden"), HIDDEN_CHOICES)
        )

    @classmethod
    def build(cls, config: Any, in_dim: int) -> AttentiveStatsPool:
        return AttentiveStatsPool(in_dim, config.hidden)
