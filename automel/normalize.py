"""Feature normalisation in front of the encoder, saved with the model's weights.

Raw log-mel into an encoder is the weakest set-up there is; ``global`` standardises each mel bin with the
training set's mean and std, ``utterance`` is CMVN over each utterance's real frames, ``none`` is the
course sample. Padded frames stay at whatever value they had (they are masked downstream).
"""

from __future__ import annotations

import torch
from torch import nn

NORMALIZE_PARAM = "train.normalize"  # searched with the training parameters, saved with the weights
NORMALIZE_MODES = ("none", "global", "utterance")  # the one list: TrainParams checks against it too
DEFAULT_NORMALIZE = "global"


class FeatureNorm(nn.Module):
    """``(B,T,F), mask (B,T) -> (B,T,F)``; ``mean``/``std`` buffers hold the global statistics."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, n_mels: int, mode: str = DEFAULT_NORMALIZE) -> None:
        super().__init__()
        if mode not in NORMALIZE_MODES:
            raise ValueError(f"unknown normalisation {mode!r} (one of {', '.join(NORMALIZE_MODES)})")
        self.mode = mode
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.std.copy_(std.clamp_min(1e-5))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.mode == "global":
            out = (x - self.mean) / self.std
        elif self.mode == "utterance":
            weight = mask.unsqueeze(-1).to(x.dtype)
            count = weight.sum(1, keepdim=True).clamp_min(1.0)
            mean = (x * weight).sum(1, keepdim=True) / count
            var = (((x - mean) * weight) ** 2).sum(1, keepdim=True) / count
            out = (x - mean) / var.clamp_min(1e-5).sqrt()
        else:
            return x
        return torch.where(mask.unsqueeze(-1), out, x)
