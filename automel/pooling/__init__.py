"""Built-in poolings: ``(B, T, D), mask (B, T) -> (B, P)``. One plugin per module."""

from automel.pooling.attentive_stats import AttentiveStatsPooling, AttentiveStatsPoolingConfig
from automel.pooling.mean import MeanPooling, MeanPoolingConfig
from automel.pooling.self_attention import SelfAttentionPooling, SelfAttentionPoolingConfig

__all__ = [
    "AttentiveStatsPooling",
    "AttentiveStatsPoolingConfig",
    "MeanPooling",
    "MeanPoolingConfig",
    "SelfAttentionPooling",
    "SelfAttentionPoolingConfig",
]
