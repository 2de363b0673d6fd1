"""Self-attentive pooling (SAP): a learned weighted mean over frames.

Cai, Chen and Li 2018, "Exploring the Encoding Layer and Loss Function in End-to-End Speaker and
Language Recognition System" (Odyssey 2018, arXiv 1804.05160): each frame gets a scalar score,
a softmax over the utterance's frames turns the scores into weights, the embedding is the
weighted mean. The score is ``Linear(D, 1)`` (``hidden = 0``) or the small MLP
``Linear(D, hidden) -> tanh -> Linear(hidden, 1)`` of Zhu et al. 2018 / Okabe et al. 2018.

Shapes: ``x (B, T, D)``, ``mask (B, T)`` bool, True = real frame -> ``(B, D)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from torch import Tensor, nn

from automel.layers import masked_fill_padding
from automel.plugin import PoolingPlugin

__all__ = ["SelfAttentionPooling", "SelfAttentionPoolingConfig", "SelfAttentivePool", "attention_weights"]

HIDDEN_CHOICES = (0, 64, 128)


@dataclass(frozen=True)
class SelfAttentionPoolingConfig:
    """``hidden`` (``pooling.self-attention.hidden``): 0 for a linear score, else the scoring MLP's width."""

    hidden: int = 0

    def __post_init__(self) -> None:
        if self.hidden < 0:
            raise ValueError(f"hidden={self.hidden} must be 0 (linear score) or positive")


def score_network(in_dim: int, hidden: int) -> nn.Module:
    """Per-frame scalar score: ``(B, T, D) -> (B, T, 1)``."""
    if hidden == 0:
        return nn.Linear(in_dim, 1)
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def attention_weights(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over real frames: ``scores (B, T, 1)``, ``mask (B, T)`` -> weights ``(B, T, 1)``.

    Padded frames get ``-inf`` before the softmax, i.e. exactly zero weight, so the weights of an
    utterance's real frames are the same whatever it was padded to.
    """
    return masked_fill_padding(scores, mask, float("-inf")).softmax(dim=1)


class SelfAttentivePool(nn.Module):
    """``(B, T, D), (B, T) -> (B, D)``; ``out_dim == D``."""

    def __init__(self, in_dim: int, hidden: int) -> None:
        super().__init__()
        self.out_dim = in_dim
        self.score = score_network(in_dim, hidden)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = masked_fill_padding(x, mask)  # weight 0 times a NaN pad would still be NaN
        weights = attention_weights(self.score(x), mask)
        return (weights * x).sum(dim=1)


class SelfAttentionPooling(PoolingPlugin):
    """Self-attentive pooling: softmax-weighted mean of the real frames."""

    name = "self-attention"
    config_cls = SelfAttentionPoolingConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> SelfAttentionPoolingConfig:
        return SelfAttentionPoolingConfig(
            hidden=trial.suggest_categorical(cls.param("hidden"), HIDDEN_CHOICES)
        )

    @classmethod
    def build(cls, config: Any, in_dim: int) -> SelfAttentivePool:
        return SelfAttentivePool(in_dim, config.hidden)
