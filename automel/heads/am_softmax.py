"""Additive margin softmax (AM-softmax / CosFace).

Wang, Cheng, Liu and Liu 2018, "Additive Margin Softmax for Face Verification" (arXiv 1801.05599),
equation (5): with L2-normalised embedding and class weights, the target logit is
``s * (cos(theta_y) - m)`` and every other logit ``s * cos(theta_j)``. The margin applies only when
labels are given (training); inference logits are ``s * cos``. The HW4 "Boss" baseline.

Shapes: ``embedding (B, P)``, ``labels (B,) | None`` -> logits ``(B, C)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import optuna
from torch import Tensor

from automel.heads._margin import MarginHead, check_margin_config
from automel.plugin import HeadPlugin

__all__ = ["AMSoftmax", "AMSoftmaxConfig", "AdditiveMarginHead"]

EMBED_CHOICES = (None, 128, 192, 256)


@dataclass(frozen=True)
class AMSoftmaxConfig:
    """Fields are ``head.am-softmax.<field>``; ``margin_warmup``: fraction of training spent raising m."""

    embed_dim: int | None = 192
    scale: float = 30.0
    margin: float = 0.2
    margin_warmup: float = 0.2

    def __post_init__(self) -> None:
        check_margin_config(self.embed_dim, self.scale, self.margin, self.margin_warmup)


class AdditiveMarginHead(MarginHead):
    """``s * (cos - m)`` at the target, ``s * cos`` elsewhere."""

    def target_logit(self, cos: Tensor) -> Tensor:
        return cos - self.margin


class AMSoftmax(HeadPlugin):
    """Additive margin softmax with a searchable scale and margin."""

    name = "am-softmax"
    config_cls = AMSoftmaxConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> AMSoftmaxConfig:
        return AMSoftmaxConfig(
            embed_dim=cast("int | None", trial.suggest_categorical(cls.param("embed_dim"), EMBED_CHOICES)),
            scale=trial.suggest_float(cls.param("scale"), 15.0, 40.0),
            margin=trial.suggest_float(cls.param("margin"), 0.1, 0.4),
        )

    @classmethod
    def build(cls, config: Any, in_dim: int, num_classes: int) -> AdditiveMarginHead:
        return AdditiveMarginHead(
            in_dim,
            num_classes,
            embed_dim=config.embed_dim,
            scale=config.scale,
            margin=config.margin,
            margin_warmup=config.margin_warmup,
        )
