"""Built-in encoders: ``(B, T, n_mels), mask (B, T) -> (B, T, D)``. One plugin per module."""

from automel.encoders.conformer import Conformer, ConformerConfig
from automel.encoders.transformer import Transformer, TransformerConfig

__all__ = ["Conformer", "ConformerConfig", "Transformer", "TransformerConfig"]
