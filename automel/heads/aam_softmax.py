"""Additive angular margin softmax (AAM-softmax / ArcFace).

Deng, Guo, Xue and Zafeiriou 2019, "ArcFace: Additive Angular Margin Loss for Deep Face Recognition"
(arXiv 1801.07698), equation (3): the target logit is ``s * cos(theta_y + m)``, the others
``s * cos(theta_j)``, with ``cos(theta + m) = cos(theta) cos(m) - sin(theta) sin(m)``.

``cos(theta + m)`` stops decreasing once ``theta + m > pi``, which would reward a worse angle; as in
insightface, past the threshold ``th = cos(pi - m)`` the target logit becomes the CosFace-like
``cos(theta) - mm`` with ``mm = sin(pi - m) * m``, which keeps it monotonic and continuous.
``easy_margin`` instead applies the margin only where ``cos(theta) > 0``.

Shapes: ``embedding (B, P)``, ``labels (B,) | None`` -> logits ``(B, C)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, cast

import optuna
import torch
from torch import Tensor

from automel.heads._margin import MarginHead, check_margin_config
from automel.plugin import HeadPlugin

__all__ = ["AAMSoftmax", "AAMSoftmaxConfig", "AngularMarginHead"]

EMBED_CHOICES = (None, 128, 192, 256)
# sin(theta) = sqrt(1 - cos^2) has an infinite derivative at cos = +-1; a tiny floor keeps it finite.
SINE_FLOOR = 1e-9


@dataclass(frozen=True)
class AAMSoftmaxConfig:
    """Fields are ``head.aam-softmax.<field>``; ``margin_warmup``: fraction of training spent raising m."""

    embed_dim: int | None = 192
    scale: float = 30.0
    margin: float = 0.2
    margin_warmup: float = 0.2
    easy_margin: bool = False

    def __post_init__(self) -> None:
        check_margin_config(self.embed_dim, self.scale, self.margin, self.margin_warmup)


class AngularMarginHead(MarginHead):
    """``s * cos(theta + m)`` at the target (with the threshold handling), ``s * cos`` elsewhere."""

    def __init__(self, in_dim: int, num_classes: int, *, easy_margin: bool, **kwargs: Any) -> None:
        super().__init__(in_dim, num_classes, **kwargs)
        self.easy_margin = easy_margin

    def target_logit(self, cos: Tensor) -> Tensor:
        m = self.margin  # a 0-d tensor, read at every call: the warm-up changes it
        sine = torch.sqrt((1.0 - cos.pow(2)).clamp(min=SINE_FLOOR))
        phi = cos * torch.cos(m) - sine * torch.sin(m)
        if self.easy_margin:
            return torch.where(cos > 0, phi, cos)
        return torch.where(cos > torch.cos(math.pi - m), phi, cos - torch.sin(math.pi - m) * m)


class AAMSoftmax(HeadPlugin):
    """Additive angular margin (ArcFace) softmax with a searchable scale and margin."""

    name = "aam-softmax"
    config_cls = AAMSoftmaxConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> AAMSoftmaxConfig:
        return AAMSoftmaxConfig(
            embed_dim=cast("int | None", trial.suggest_categorical(cls.param("embed_dim"), EMBED_CHOICES)),
            scale=trial.suggest_float(cls.param("scale"), 15.0, 40.0),
            margin=trial.suggest_float(cls.param("margin"), 0.1, 0.5),
        )

    @classmethod
    def build(cls, config: Any, in_dim: int, num_classes: int) -> AngularMarginHead:
        return AngularMarginHead(
            in_dim,
            num_classes,
            embed_dim=config.embed_dim,
            scale=config.scale,
            margin=config.margin,
            margin_warmup=config.margin_warmup,
            easy_margin=config.easy_margin,
        )
