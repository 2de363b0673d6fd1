"""Built-in heads: ``embedding (B, P), labels (B,) | None -> logits (B, C)``. One plugin per module."""

from automel.heads.aam_softmax import AAMSoftmax, AAMSoftmaxConfig
from automel.heads.am_softmax import AMSoftmax, AMSoftmaxConfig
from automel.heads.softmax import Softmax, SoftmaxConfig

__all__ = ["AAMSoftmax", "AAMSoftmaxConfig", "AMSoftmax", "AMSoftmaxConfig", "Softmax", "SoftmaxConfig"]
