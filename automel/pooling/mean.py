"""Masked mean pooling: the average of the real frames (the HW4 seed's ``out.mean(dim=1)``, but
padding-aware, so an utterance's embedding does not depend on the batch it was padded into).

Shapes: ``x (B, T, D)``, ``mask (B, T)`` bool, True = real frame -> ``(B, D)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from torch import Tensor, nn

from automel.layers import masked_mean
from automel.plugin import PoolingPlugin

__all__ = ["MaskedMean", "MeanPooling", "MeanPoolingConfig"]


@dataclass(frozen=True)
class MeanPoolingConfig:
    """Mean pooling has no parameters."""


class MaskedMean(nn.Module):
    """``(B, T, D), (B, T) -> (B, D)``; ``out_dim == D``."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return masked_mean(x, mask)


class MeanPooling(PoolingPlugin):
    """The average of the real frames."""

    name = "mean"
    config_cls = MeanPoolingConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> MeanPoolingConfig:
        return MeanPoolingConfig()

    @classmethod
    def build(cls, config: Any, in_dim: int) -> MaskedMean:
        return MaskedMean(in_dim)
