"""ECAPA-TDNN encoder: Desplanques, Thienpondt and Demuynck 2020, "ECAPA-TDNN: Emphasized Channel
Attention, Propagation and Aggregation in TDNN Based Speaker Verification" (Interspeech 2020,
arXiv 2005.07143), section 3 and figure 2.

With ``C`` channels, ``n`` blocks and ``(B, C, T)`` inside (channels first, as ``Conv1d`` wants)::

    h0 = BN(ReLU(Conv1d(F -> C, k=5)))                         # the stem
    h_i = SERes2Block_i(h0 + h1 + ... + h_{i-1}), i = 1..n     # dilation i + 1: 2, 3, 4, ...
    y = ReLU(Conv1d(n*C -> M, k=1)(concat(h1, ..., hn)))       # multi-layer feature aggregation (MFA)

    SERes2Block(x) = x + SE(ConvReluBn_1x1(Res2(ConvReluBn_1x1(x))))

``Res2`` (Gao et al. 2019, "Res2Net", arXiv 1904.01169) splits the channels into ``scale`` groups
``x_1..x_s``: ``y_1 = x_1``, ``y_2 = K_2(x_2)``, ``y_j = K_j(x_j + y_{j-1})`` with each ``K`` a dilated
3-tap Conv1d + ReLU + BN, so later groups see ever wider contexts. ``SE`` (Hu et al. 2018,
arXiv 1709.01507) rescales each channel by ``sigmoid(W2 ReLU(W1 mean_t(x)))``. Each block's input is the
sum of the stem's and all preceding blocks' outputs (paper section 3.3; WeSpeaker does the same).

Not here, by design: the paper's channel- and context-dependent attentive statistics pooling, its final
BatchNorm and the AAM-softmax head belong to automel's pooling and head plugins (``attentive-stats``,
``aam-softmax``), which the search combines with this encoder. The MFA width ``M`` is ``mfa_channels``
(the paper's 1536 for both C = 512 and C = 1024).

Padding: every convolution that reads neighbouring frames (``k > 1``) gets its input with padded frames
set to zero, so a real frame near the end of an utterance sees zeros past its end exactly as the
convolution's own zero padding gives an utterance alone; the squeeze-excitation mean runs over real
frames only; BatchNorm takes its training statistics over real frames only and uses running statistics
in eval (automel's :class:`~automel.layers.MaskedBatchNorm1d`).

Shapes: ``x (B, T, F)``, ``mask (B, T)`` bool, True = real frame -> ``(B, T, mfa_channels)``;
padded output frames are zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
import torch
from torch import Tensor, nn

from automel.layers import MaskedBatchNorm1d, masked_fill_channels, masked_fill_padding, masked_mean
from automel.plugin import EncoderPlugin, by_scale

__all__ = ["EcapaTdnn", "EcapaTdnnConfig", "EcapaTdnnEncoder", "Res2Conv", "SERes2Block", "SqueezeExcitation"]

# Every channel count below is divisible by every Res2 scale, so the two are sampled independently and
# each parameter keeps one fixed distribution per study (Optuna refuses a name with two).
SCALE_CHOICES = (2, 4, 8)
# GPU scale: the paper's C = 512 and 1024 (3 blocks, scale 8, SE bottleneck 128) and sizes around them.
CHANNEL_CHOICES = (256, 512, 768, 1024)
SE_CHOICES = (64, 128, 256)
MFA_CHOICES = (768, 1536, 3072)  # 3072 = 3 x 1024 is SpeechBrain's default for C = 1024
# CPU scale: a 200-step trial of these costs about what a CPU-scale Transformer trial does (26 s vs 22 s
# on average over sampled configs, batch 32 x 128, one thread; see README.md). The paper's C = 512 is
# 7 x slower per step than the largest of these (C = 128, 3 blocks).
CPU_CHANNEL_CHOICES = (64, 96, 128)
CPU_SE_CHOICES = (16, 32, 64)
CPU_MFA_CHOICES = (128, 256, 384)
STEM_KERNEL = 5  # paper: the first Conv1D has k = 5
RES2_KERNEL = 3  # paper: the Res2 convolutions are 3-tap, dilated 2, 3, 4, ...


@dataclass(frozen=True)
class EcapaTdnnConfig:
    """Hyper-parameters of :class:`EcapaTdnn`; field ``f`` is the trial parameter ``encoder.ecapa-tdnn.f``.

    The defaults are the paper's C = 512 model (its table 2: 6.2 M parameters with pooling and embedding
    layer; this encoder alone has 4.8 M at 80 mels). ``mfa_channels`` is the output width ``out_dim``.
    """

    channels: int = 512
    scale: int = 8
    num_blocks: int = 3
    se_channels: int = 128
    mfa_channels: int = 1536

    def __post_init__(self) -> None:
        if self.scale < 2:
            raise ValueError(f"scale={self.scale} must be at least 2 (scale 1 has no Res2 convolution)")
        if self.channels < 1 or self.channels % self.scale:
            raise ValueError(f"channels={self.channels} must be positive and divisible by scale={self.scale}")
        if self.num_blocks < 1:
            raise ValueError(f"num_blocks={self.num_blocks} must be at least 1")
        if self.se_channels < 1 or self.mfa_channels < 1:
            raise ValueError(
                f"se_channels={self.se_channels} and mfa_channels={self.mfa_channels} must be positive"
            )


class ConvReluBn(nn.Module):
    """The paper's "Conv1D + ReLU + BN" unit, "same" padding: ``(B, C_in, T), (B, T) -> (B, C_out, T)``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, dilation: int = 1) -> None:
        super().__init__()
        padding = dilation * (kernel_size - 1) // 2  # "same": output frame t is centred on input frame t
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, dilation=dilation, padding=padding)
        self.norm = MaskedBatchNorm1d(out_channels)
        # A 1x1 convolution maps each frame alone: padded frames cannot reach real ones through it,
        # so only wider kernels pay for zeroing the padding.
        self.reads_neighbours = kernel_size > 1

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.reads_neighbours:
            x = masked_fill_channels(x, mask)  # masked_fill: 0 * inf/NaN would still be NaN
        return self.norm(torch.relu(self.conv(x)), mask)


class Res2Conv(nn.Module):
    """Res2Net's hierarchical dilated convolution over ``scale`` groups: ``(B,C,T), (B,T) -> (B,C,T)``."""

    def __init__(self, channels: int, scale: int, dilation: int) -> None:
        super().__init__()
        self.scale = scale
        width = channels // scale
        # The first group passes through unchanged; each other group gets its own 3-tap convolution.
        self.convs = nn.ModuleList(ConvReluBn(width, width, RES2_KERNEL, dilation) for _ in range(scale - 1))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        groups = x.chunk(self.scale, dim=1)
        outputs = [groups[0]]
        for j, conv in enumerate(self.convs, start=1):
            # y_j = K_j(x_j + y_{j-1}), except y_2 = K_2(x_2): y_1 is the untouched input group.
            inp = groups[j] if j == 1 else groups[j] + outputs[-1]
            outputs.append(conv(inp, mask))
        return torch.cat(outputs, dim=1)


class SqueezeExcitation(nn.Module):
    """Channel gates from the utterance mean: ``(B, C, T), (B, T) -> (B, C, T)``.

    The mean is over real frames only: padding would otherwise pull every gate towards whatever
    padded frames hold, and an utterance's gates would depend on the batch it was padded into.
    """

    def __init__(self, channels: int, se_channels: int) -> None:
        super().__init__()
        self.down = nn.Linear(channels, se_channels)
        self.up = nn.Linear(se_channels, channels)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        squeezed = masked_mean(x.transpose(1, 2), mask)  # (B, C)
        gates = torch.sigmoid(self.up(torch.relu(self.down(squeezed))))
        return x * gates.unsqueeze(-1)


class SERes2Block(nn.Module):
    """1x1 ConvReluBn -> Res2 (dilated) -> 1x1 ConvReluBn -> SE, plus a residual: ``(B,C,T) -> (B,C,T)``."""

    def __init__(self, channels: int, scale: int, dilation: int, se_channels: int) -> None:
        super().__init__()
        self.conv_in = ConvReluBn(channels, channels)
        self.res2 = Res2Conv(channels, scale, dilation)
        self.conv_out = ConvReluBn(channels, channels)
        self.se = SqueezeExcitation(channels, se_channels)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.conv_out(self.res2(self.conv_in(x, mask), mask), mask)
        return x + self.se(h, mask)


class EcapaTdnnEncoder(nn.Module):
    """Stem, SE-Res2Blocks with summed inputs, MFA: ``(B,T,in_dim), (B,T) -> (B,T,out_dim)``."""

    def __init__(self, config: EcapaTdnnConfig, in_dim: int) -> None:
        super().__init__()
        c = config.channels
        self.out_dim = config.mfa_channels
        self.stem = ConvReluBn(in_dim, c, STEM_KERNEL)
        self.blocks = nn.ModuleList(
            SERes2Block(c, config.scale, dilation=i + 2, se_channels=config.se_channels)
            for i in range(config.num_blocks)
        )
        self.mfa = nn.Conv1d(config.num_blocks * c, config.mfa_channels, kernel_size=1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        # The stem's convolution zeroes padding itself; doing it here too keeps inf/NaN pads out of the
        # transpose's copy and makes the contract obvious at the entry point.
        h = self.stem(masked_fill_padding(x, mask).transpose(1, 2), mask)
        summed, outputs = h, []
        for block in self.blocks:
            h = block(summed, mask)
            outputs.append(h)
            summed = summed + h
        # MFA: shallower blocks carry complementary speaker information (paper section 3.3).
        out = torch.relu(self.mfa(torch.cat(outputs, dim=1))).transpose(1, 2)
        return masked_fill_padding(out, mask)


class EcapaTdnn(EncoderPlugin):
    """ECAPA-TDNN; width, Res2 scale, depth, SE bottleneck and MFA width are searched (``by_scale``)."""

    name = "ecapa-tdnn"
    config_cls = EcapaTdnnConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> EcapaTdnnConfig:
        return EcapaTdnnConfig(
            channels=trial.suggest_categorical(
                cls.param("channels"), by_scale(CPU_CHANNEL_CHOICES, CHANNEL_CHOICES)
            ),
            scale=trial.suggest_categorical(cls.param("scale"), SCALE_CHOICES),
            num_blocks=trial.suggest_int(cls.param("num_blocks"), by_scale(1, 2), by_scale(3, 4)),
            se_channels=trial.suggest_categorical(
                cls.param("se_channels"), by_scale(CPU_SE_CHOICES, SE_CHOICES)
            ),
            mfa_channels=trial.suggest_categorical(
                cls.param("mfa_channels"), by_scale(CPU_MFA_CHOICES, MFA_CHOICES)
            ),
        )

    @classmethod
    def portfolio(cls) -> list[dict[str, Any]]:
        """ECAPA-TDNN + attentive statistics + AAM-softmax, the paper's recipe, sized for the search scale."""
        return [{
            "priority": 2.0,
            "encoder": cls.name, cls.param("channels"): by_scale(128, 512), cls.param("scale"): 4,
            cls.param("num_blocks"): 3, cls.param("se_channels"): by_scale(64, 128),
            cls.param("mfa_channels"): by_scale(384, 1536),
            "pooling": "attentive-stats", "pooling.attentive-stats.hidden": 128,
            "head": "aam-softmax", "head.aam-softmax.embed_dim": 192, "head.aam-softmax.scale": 30.0,
            "head.aam-softmax.margin": 0.2,
            "train.lr": 2e-3, "train.warmup": 0.1, "train.batch_size": by_scale(32, 64),
            "train.segment_len": by_scale(128, 192), "train.weight_decay": 1e-3, "train.normalize": "global",
            "train.specaugment": "light", "train.channel_aug": "light", "train.noise_aug": "light",
            "train.reverb_aug": "light",
        }]

    @classmethod
    def build(cls, config: Any, in_dim: int) -> EcapaTdnnEncoder:
        return EcapaTdnnEncoder(config, in_dim)
