"""Additive margin softmax (AM-softmax / CosFace).

Wang, Cheng, Liu and Liu 2018, "Additive Margin Softmax for Face Verification" (arXiv 1801.05599),
equation (5): with L2-normalised embedding and class weights, the target logit is
``s * (cos(theta_y) - m)`` and every other logit ``s * cos(theta_j)``. The margin applies only when
labels are given (training); inference logits are ``s * cos``. The HW4 "Boss" baseline.

Shapes: ``embedding (B, P)``, ``labels (B,) | None`` -> logits ``(B, C)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from automel.heads._margin import MarginConfig, MarginHead, MarginHeadPlugin

__all__ = ["AMSoftmax", "AMSoftmaxConfig", "AdditiveMarginHead"]


@dataclass(frozen=True)
class AMSoftmaxConfig(MarginConfig):
    """Fields are ``head.am-softmax.<field>``: those of :class:`MarginConfig`, nothing more."""


class AdditiveMarginHead(MarginHead):
    """``s * (cos - m)`` at the target, ``s * cos`` elsewhere."""

    def target_logit(self, cos: Tensor) -> Tensor:
        return cos - self.margin


class AMSoftmax(MarginHeadPlugin):
    """Additive margin softmax with a searchable scale and margin."""

    name = "am-softmax"
    config_cls = AMSoftmaxConfig
    head_cls = AdditiveMarginHead
    margin_range = (0.1, 0.4)
