"""Transformer encoder: a linear prenet and a stack of ``nn.TransformerEncoderLayer``.

Vaswani et al. 2017, "Attention Is All You Need" (arXiv 1706.03762); pre-norm (``norm_first``)
as in Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture" (arXiv 2002.04745).

The defaults are the HW4 seed's "Simple" model exactly: ``Linear(n_mels, 80)`` then one post-norm
layer with 2 heads, feed-forward 256, dropout 0.1, ReLU, no positional encoding.

Shapes: ``x (B, T, F)``, ``mask (B, T)`` bool with True = real frame -> ``(B, T, d_model)``; padded
output frames are zero.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import optuna
from torch import Tensor, nn

from automel.layers import Dropout, MaskedSelfAttention, masked_fill_padding
from automel.plugin import EncoderPlugin, by_scale

__all__ = ["Transformer", "TransformerConfig", "TransformerEncoder", "TransformerLayer", "TransformerStack"]

# Every width below is divisible by every head count, so the two can be sampled independently and
# each keeps one fixed distribution (Optuna refuses a name with two distributions in one study).
D_MODEL_CHOICES = (64, 80, 128, 192, 256)
NHEAD_CHOICES = (1, 2, 4)
# A CPU-scale search (50 trials in 15 min on 2 cores): every value divisible by every head count.
CPU_D_MODEL_CHOICES = (64, 80, 96)


@dataclass(frozen=True)
class TransformerConfig:
    """Hyper-parameters of :class:`Transformer`; field ``f`` is trial parameter ``encoder.transformer.f``."""

    d_model: int = 80
    nhead: int = 2
    dim_feedforward: int = 256
    num_layers: int = 1
    dropout: float = 0.1
    norm_first: bool = False

    def __post_init__(self) -> None:
        if self.d_model % self.nhead:
            raise ValueError(f"d_model={self.d_model} is not divisible by nhead={self.nhead}")
        if self.num_layers < 1:
            raise ValueError(f"num_layers={self.num_layers} must be at least 1")


class TransformerLayer(nn.Module):
    """``nn.TransformerEncoderLayer`` (ReLU, batch-first) on :class:`MaskedSelfAttention`: ``(B,T,D), (B,T)``.

    Same sub-modules, names and initialisation as PyTorch's layer, so saved state dicts load unchanged;
    attention runs through ``F.scaled_dot_product_attention`` with a boolean key mask, or none at all
    for a batch without padding.
    """

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        d, ff = config.d_model, config.dim_feedforward
        self.norm_first = config.norm_first
        self.self_attn = MaskedSelfAttention(d, config.nhead, config.dropout)
        self.linear1, self.linear2 = nn.Linear(d, ff), nn.Linear(ff, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.dropout, self.dropout1, self.dropout2 = (Dropout(config.dropout) for _ in range(3))
        self.activation = nn.ReLU()  # the seed's (and PyTorch's default) activation

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.norm_first:
            x = x + self._attend(self.norm1(x), mask)
            return x + self._feed_forward(self.norm2(x))
        x = self.norm1(x + self._attend(x, mask))
        return self.norm2(x + self._feed_forward(x))

    def _attend(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.dropout1(self.self_attn(x, mask))

    def _feed_forward(self, x: Tensor) -> Tensor:
        return self.dropout2(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerStack(nn.Module):
    """``num_layers`` copies of one :class:`TransformerLayer` (as ``nn.TransformerEncoder`` deep-copies its
    layer, so all start alike), then a LayerNorm for pre-norm stacks, whose residual stream is left
    un-normalised: ``(B,T,D), (B,T) -> (B,T,D)``."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        layer = TransformerLayer(config)
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(config.d_model) if config.norm_first else None

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x) if self.norm is not None else x


class TransformerEncoder(nn.Module):
    """``Linear(in_dim, d_model)`` + Transformer layers: ``(B,T,in_dim), (B,T) -> (B,T,d_model)``."""

    def __init__(self, config: TransformerConfig, in_dim: int) -> None:
        super().__init__()
        self.out_dim = config.d_model
        self.prenet = nn.Linear(in_dim, config.d_model)
        self.layers = TransformerStack(config)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        # Zero padding first: attention gives padded keys zero weight, but 0 * inf/NaN is still NaN.
        out = self.prenet(masked_fill_padding(x, mask))
        return masked_fill_padding(self.layers(out, mask), mask)


class Transformer(EncoderPlugin):
    """The seed's Transformer encoder, with its width, depth, heads and norm placement searchable."""

    name = "transformer"
    config_cls = TransformerConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> TransformerConfig:
        return TransformerConfig(
            d_model=trial.suggest_categorical(cls.param("d_model"), by_scale(CPU_D_MODEL_CHOICES, D_MODEL_CHOICES)),
            nhead=trial.suggest_categorical(cls.param("nhead"), NHEAD_CHOICES),
            dim_feedforward=trial.suggest_int(cls.param("dim_feedforward"), 128, by_scale(384, 1024), log=True),
            num_layers=trial.suggest_int(cls.param("num_layers"), 1, by_scale(2, 4)),
            dropout=trial.suggest_float(cls.param("dropout"), 0.0, 0.3),
            norm_first=trial.suggest_categorical(cls.param("norm_first"), (False, True)),
        )

    @classmethod
    def build(cls, config: Any, in_dim: int) -> TransformerEncoder:
        return TransformerEncoder(config, in_dim)
