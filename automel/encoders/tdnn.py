"""TDNN encoder, the x-vector frame layers: Snyder et al. 2018, "X-Vectors: Robust DNN Embeddings for
Speaker Recognition" (ICASSP 2018), table 1, frame1 to frame5.

A time-delay neural network is a stack of 1-D convolutions over frames. With ``C`` = ``channels`` and
``M`` = ``out_channels``, and ``(B, C, T)`` inside (channels first, as ``Conv1d`` wants)::

    frame1: Conv1d(F -> C, k=5, dilation 1)   context [t-2, t+2]
    frame2: Conv1d(C -> C, k=3, dilation 2)   context {t-2, t, t+2}
    frame3: Conv1d(C -> C, k=3, dilation 3)   context {t-3, t, t+3}
    frame4: Conv1d(C -> C, k=1)
    frame5: Conv1d(C -> M, k=1)               the width statistics pooling sees (out_dim)

each followed by ReLU then BatchNorm (Kaldi's order) and, if ``dropout`` > 0, dropout. The frame
layers together see 15 frames. The paper's sizes are C = 512, M = 1500 (the top of the GPU ranges
below); the defaults are the compact 256 / 512, where the CPU and GPU search ranges meet.

Not here, by design: the paper's statistics pooling and its segment layers belong to automel's pooling
and head plugins (``attentive-stats``, ``softmax``, the margin heads), which a search combines with
this encoder.

Padding: every convolution that reads neighbouring frames (``k > 1``) gets its input with padded frames
set to zero, so a real frame near the end of an utterance sees zeros past its end exactly as the
convolution's own zero padding gives an utterance alone; BatchNorm takes its training statistics over
real frames only and uses running statistics in eval (:class:`automel.layers.MaskedBatchNorm1d`).

Shapes: ``x (B, T, F)``, ``mask (B, T)`` bool, True = real frame -> ``(B, T, out_channels)``; padded
output frames are zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
import torch
from torch import Tensor, nn

from automel.layers import Dropout, MaskedBatchNorm1d, masked_fill_channels, masked_fill_padding
from automel.plugin import EncoderPlugin, by_scale

__all__ = ["Tdnn", "TdnnConfig", "TdnnEncoder", "TdnnLayer"]

# (kernel, dilation) of frame1..frame5, the paper's table 1.
CONTEXTS = ((5, 1), (3, 2), (3, 3), (1, 1), (1, 1))
# CPU scale: a training step at C 256 / M 512 costs what a CPU-scale Conformer's does (batch 32 x 128,
# 80 mels, one thread: 2.8 steps/s, vs 3.4 for a Conformer 64 x 2 and 2.3 for 96 x 2; C 128 / M 256: 7.0).
CPU_CHANNEL_CHOICES = (128, 256)
CPU_OUT_CHOICES = (256, 512)
# GPU scale: up to the paper's C 512 / M 1500.
CHANNEL_CHOICES = (256, 512)
OUT_CHOICES = (512, 1500)


@dataclass(frozen=True)
class TdnnConfig:
    """Hyper-parameters of :class:`Tdnn`; field ``f`` is the trial parameter ``encoder.tdnn.f``.

    ``channels`` is the width of frame1..frame4, ``out_channels`` that of frame5 (``out_dim``).
    """

    channels: int = 256
    out_channels: int = 512
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.channels < 1 or self.out_channels < 1:
            raise ValueError(f"channels={self.channels} and out_channels={self.out_channels} must be positive")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")


class TdnnLayer(nn.Module):
    """Conv1d ("same" padding) -> ReLU -> BatchNorm -> Dropout: ``(B, C_in, T), (B, T) -> (B, C_out, T)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int,
                 dropout: float) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2  # output frame t is centred on input frame t
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, padding=padding)
        self.norm = MaskedBatchNorm1d(out_channels)
        self.dropout = Dropout(dropout)
        # A 1x1 convolution maps each frame alone: padded frames cannot reach real ones through it.
        self.reads_neighbours = kernel_size > 1

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.reads_neighbours:
            # masked_fill, not multiplication: padded values may be inf/NaN (and after a BatchNorm they
            # hold its bias, not zero).
            x = masked_fill_channels(x, mask)
        return self.dropout(self.norm(torch.relu(self.conv(x)), mask))


class TdnnEncoder(nn.Module):
    """frame1..frame5 of the x-vector network: ``(B, T, in_dim), (B, T) -> (B, T, out_channels)``."""

    def __init__(self, config: TdnnConfig, in_dim: int) -> None:
        super().__init__()
        self.out_dim = config.out_channels
        widths = [in_dim] + [config.channels] * (len(CONTEXTS) - 1) + [config.out_channels]
        self.layers = nn.ModuleList(
            TdnnLayer(widths[i], widths[i + 1], kernel, dilation, config.dropout)
            for i, (kernel, dilation) in enumerate(CONTEXTS)
        )

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = masked_fill_padding(x, mask).transpose(1, 2)  # (B, F, T)
        for layer in self.layers:
            h = layer(h, mask)
        return masked_fill_padding(h.transpose(1, 2), mask)


class Tdnn(EncoderPlugin):
    """The x-vector TDNN; hidden width, output width and dropout are searched (``by_scale``)."""

    name = "tdnn"
    config_cls = TdnnConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> TdnnConfig:
        return TdnnConfig(
            channels=trial.suggest_categorical(cls.param("channels"), by_scale(CPU_CHANNEL_CHOICES, CHANNEL_CHOICES)),
            out_channels=trial.suggest_categorical(cls.param("out_channels"), by_scale(CPU_OUT_CHOICES, OUT_CHOICES)),
            dropout=trial.suggest_float(cls.param("dropout"), 0.0, 0.3),
        )

    @classmethod
    def build(cls, config: Any, in_dim: int) -> TdnnEncoder:
        return TdnnEncoder(config, in_dim)
