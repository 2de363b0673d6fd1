"""Conformer encoder: Gulati et al. 2020, "Conformer: Convolution-augmented Transformer for Speech
Recognition" (arXiv 2005.08100), section 2 and figure 1.

Each block is, with every sub-module pre-norm (LayerNorm inside it) and residual::

    x = x + 1/2 * FFN(x)          # Macaron half-step feed-forward, Swish
    x = x + MHSA(x)               # multi-head self-attention over real frames only
    x = x + Conv(x)               # pointwise -> GLU -> depthwise(k) -> BatchNorm -> Swish -> pointwise
    x = x + 1/2 * FFN(x)
    y = LayerNorm(x)

This follows the paper. The HW4 seed's ``ConformerBlock`` differs: it is post-norm (``norm(x + f(x))``
after attention, convolution and the second FFN) and only the first FFN takes the half step.
Also unlike the paper, the front end is ``Linear(n_mels, d_model)`` + dropout (no convolutional
subsampling: utterances are short) and attention has no relative positional encoding (the
convolution module already gives the block a sense of local order; speaker identity barely
depends on absolute position).

Padding: attention masks padded keys (:class:`automel.layers.MaskedSelfAttention`); the convolution
module zeroes padded frames right before the depthwise convolution, so a real frame's receptive field
sees zeros past the utterance's end exactly as the convolution's own zero padding does for an utterance
alone; BatchNorm uses running statistics
in eval and, in training, statistics over real frames only (:class:`automel.layers.MaskedBatchNorm1d`).

Shapes: ``x (B, T, F)``, ``mask (B, T)`` bool, True = real frame -> ``(B, T, d_model)``; padded
output frames are zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from torch import Tensor, nn

from automel.layers import (
    Dropout,
    MaskedBatchNorm1d,
    MaskedSelfAttention,
    masked_fill_channels,
    masked_fill_padding,
)
from automel.plugin import EncoderPlugin, by_scale

__all__ = ["Conformer", "ConformerBlock", "ConformerConfig", "ConformerEncoder"]

# Every width is divisible by every head count (see transformer.py for why they are sampled apart).
D_MODEL_CHOICES = (64, 96, 128, 144, 192)
NHEAD_CHOICES = (1, 2, 4)
KERNEL_CHOICES = (7, 15, 31)
# A CPU-scale search keeps Conformers small: at d_model 144 x 3 layers one 32x128 step takes ~1 s on a core.
CPU_D_MODEL_CHOICES = (64, 96)
CPU_KERNEL_CHOICES = (7, 15)


@dataclass(frozen=True)
class ConformerConfig:
    """Hyper-parameters of :class:`Conformer`; field ``f`` is the trial parameter ``encoder.conformer.f``."""

    d_model: int = 144
    nhead: int = 4
    dim_feedforward: int = 576
    kernel_size: int = 15
    num_layers: int = 3
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.d_model % self.nhead:
            raise ValueError(f"d_model={self.d_model} is not divisible by nhead={self.nhead}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={self.kernel_size} must be odd so frames stay centred")
        if self.num_layers < 1:
            raise ValueError(f"num_layers={self.num_layers} must be at least 1")


class FeedForward(nn.Module):
    """LayerNorm -> Linear(d, ff) -> Swish -> Dropout -> Linear(ff, d) -> Dropout, per frame."""

    def __init__(self, d_model: int, dim_feedforward: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, dim_feedforward),
            nn.SiLU(),  # Swish with beta = 1
            Dropout(dropout),
            nn.Linear(dim_feedforward, d_model),
            Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SelfAttention(nn.Module):
    """LayerNorm -> multi-head self-attention over real frames -> Dropout: ``(B,T,D), (B,T) -> (B,T,D)``."""

    def __init__(self, d_model: int, nhead: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.attention = MaskedSelfAttention(d_model, nhead, dropout)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.dropout(self.attention(self.norm(x), mask))


class ConvModule(nn.Module):
    """The convolution module of figure 2: ``(B,T,D), (B,T) -> (B,T,D)``."""

    def __init__(self, d_model: int, kernel_size: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.pointwise1 = nn.Conv1d(d_model, 2 * d_model, kernel_size=1)
        self.glu = nn.GLU(dim=1)
        self.depthwise = nn.Conv1d(
            d_model, d_model, kernel_size, padding=(kernel_size - 1) // 2, groups=d_model
        )
        self.batch_norm = MaskedBatchNorm1d(d_model)
        self.activation = nn.SiLU()
        self.pointwise2 = nn.Conv1d(d_model, d_model, kernel_size=1)
        self.dropout = Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.glu(self.pointwise1(self.norm(x).transpose(1, 2)))  # (B, D, T)
        # The only place where one frame reads its neighbours' values: padding must be zero here.
        h = masked_fill_channels(h, mask)
        h = self.activation(self.batch_norm(self.depthwise(h), mask))
        return self.dropout(self.pointwise2(h)).transpose(1, 2)


class ConformerBlock(nn.Module):
    """One Conformer block (paper order; see the module docstring): ``(B,T,D), (B,T) -> (B,T,D)``."""

    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        d = config.d_model
        self.ff1 = FeedForward(d, config.dim_feedforward, config.dropout)
        self.mhsa = SelfAttention(d, config.nhead, config.dropout)
        self.conv = ConvModule(d, config.kernel_size, config.dropout)
        self.ff2 = FeedForward(d, config.dim_feedforward, config.dropout)
        self.final_norm: nn.Module = nn.LayerNorm(d)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.mhsa(x, mask)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.final_norm(x)


class ConformerEncoder(nn.Module):
    """``Linear(in_dim, d_model)`` + dropout + ``num_layers`` Conformer blocks."""

    def __init__(self, config: ConformerConfig, in_dim: int) -> None:
        super().__init__()
        self.out_dim = config.d_model
        self.prenet = nn.Sequential(nn.Linear(in_dim, config.d_model), Dropout(config.dropout))
        self.blocks = nn.ModuleList(ConformerBlock(config) for _ in range(config.num_layers))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        out = self.prenet(masked_fill_padding(x, mask))
        for block in self.blocks:
            out = block(out, mask)
        return masked_fill_padding(out, mask)


class Conformer(EncoderPlugin):
    """The paper's Conformer; width, heads, feed-forward size, kernel, depth and dropout are searched."""

    name = "conformer"
    config_cls = ConformerConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> ConformerConfig:
        return ConformerConfig(
            d_model=trial.suggest_categorical(cls.param("d_model"), by_scale(CPU_D_MODEL_CHOICES, D_MODEL_CHOICES)),
            nhead=trial.suggest_categorical(cls.param("nhead"), NHEAD_CHOICES),
            dim_feedforward=trial.suggest_int(cls.param("dim_feedforward"), 128, by_scale(384, 1024), log=True),
            kernel_size=trial.suggest_categorical(cls.param("kernel_size"),
                                                  by_scale(CPU_KERNEL_CHOICES, KERNEL_CHOICES)),
            num_layers=trial.suggest_int(cls.param("num_layers"), 1, by_scale(2, 4)),
            dropout=trial.suggest_float(cls.param("dropout"), 0.0, 0.3),
        )

    @classmethod
    def build(cls, config: Any, in_dim: int) -> ConformerEncoder:
        return ConformerEncoder(config, in_dim)
