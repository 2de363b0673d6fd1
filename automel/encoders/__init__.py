"""Built-in encoders: ``(B, T, n_mels), mask (B, T) -> (B, T, D)``. One plugin per module."""

from automel.encoders.conformer import Conformer, ConformerConfig
from automel.encoders.tdnn import Tdnn, TdnnConfig
from automel.encoders.transformer import Transformer, TransformerConfig

__all__ = ["Conformer", "ConformerConfig", "Tdnn", "TdnnConfig", "Transformer", "TransformerConfig"]
