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
from typing import Any

import torch
from torch import Tensor

from automel.heads._margin import MarginConfig, MarginHead, MarginHeadPlugin

__all__ = ["AAMSoftmax", "AAMSoftmaxConfig", "AngularMarginHead"]

# sin(theta) = sqrt(1 - cos^2) has an infinite derivative at cos = +-1; a tiny floor keeps it finite.
SINE_FLOOR = 1e-9


@dataclass(frozen=True)
class AAMSoftmaxConfig(MarginConfig):
    """Fields are ``head.aam-softmax.<field>``: :class:`MarginConfig`'s and ``easy_margin`` (not searched)."""

    easy_margin: bool = False


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


class AAMSoftmax(MarginHeadPlugin):
    """Additive angular margin (ArcFace) softmax with a searchable scale and margin."""

    name = "aam-softmax"
    config_cls = AAMSoftmaxConfig
    head_cls = AngularMarginHead
    margin_range = (0.1, 0.5)

    @classmethod
    def head_options(cls, config: Any) -> dict[str, Any]:
        return {**super().head_options(config), "easy_margin": config.easy_margin}
