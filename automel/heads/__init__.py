"""Built-in heads: ``embedding (B, P), labels (B,) | None -> logits (B, C)``. One plugin per module.

:class:`MarginConfig`, :class:`MarginHead` and :class:`MarginHeadPlugin` are the bases of the margin
heads, for a plugin that adds another margin formula.
"""

from automel.heads._margin import MarginConfig, MarginHead, MarginHeadPlugin
from automel.heads.aam_softmax import AAMSoftmax, AAMSoftmaxConfig
from automel.heads.am_softmax import AMSoftmax, AMSoftmaxConfig
from automel.heads.softmax import Softmax, SoftmaxConfig

__all__ = [
    "AAMSoftmax",
    "AAMSoftmaxConfig",
    "AMSoftmax",
    "AMSoftmaxConfig",
    "MarginConfig",
    "MarginHead",
    "MarginHeadPlugin",
    "Softmax",
    "SoftmaxConfig",
]
