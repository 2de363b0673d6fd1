"""Plain softmax classifier head: the HW4 seed's ``pred_layer``.

``Linear(P, hidden) -> ReLU -> [Dropout] -> Linear(hidden, C)``, returning logits for
``nn.CrossEntropyLoss``; ``hidden = None`` means "same as the input", as in the seed
(``Linear(d_model, d_model)``). Labels are accepted and ignored: there is no margin.

Shapes: ``embedding (B, P)``, ``labels (B,) | None`` -> logits ``(B, C)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import optuna
from torch import Tensor, nn

from automel.layers import Dropout
from automel.plugin import HeadPlugin

__all__ = ["Softmax", "SoftmaxClassifier", "SoftmaxConfig"]

HIDDEN_CHOICES = (None, 128, 256, 512)


@dataclass(frozen=True)
class SoftmaxConfig:
    """``hidden``: width of the hidden layer (None = the input width); ``dropout`` before the last layer."""

    hidden: int | None = None
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.hidden is not None and self.hidden < 1:
            raise ValueError(f"hidden={self.hidden} must be positive or None")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")


class SoftmaxClassifier(nn.Module):
    """``(B, P), labels | None -> (B, C)``: a two-layer MLP giving logits."""

    def __init__(self, config: SoftmaxConfig, in_dim: int, num_classes: int) -> None:
        super().__init__()
        hidden = config.hidden or in_dim
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            Dropout(config.dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, embedding: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.net(embedding)


class Softmax(HeadPlugin):
    """The seed's classifier: an MLP and plain softmax cross-entropy."""

    name = "softmax"
    config_cls = SoftmaxConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> SoftmaxConfig:
        return SoftmaxConfig(
            hidden=cast("int | None", trial.suggest_categorical(cls.param("hidden"), HIDDEN_CHOICES)),
            dropout=trial.suggest_float(cls.param("dropout"), 0.0, 0.3),
        )

    @classmethod
    def build(cls, config: Any, in_dim: int, num_classes: int) -> SoftmaxClassifier:
        return SoftmaxClassifier(config, in_dim, num_classes)
