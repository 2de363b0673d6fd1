"""SpecAugment (Park et al. 2019, "SpecAugment: A Simple Data Augmentation Method for Automatic Speech
Recognition"): time and frequency masks on raw log-mel.

Park et al. fill with 0 after mean normalisation; on raw features the equivalent is each utterance's mean
over its real frames, per mel bin, so no extreme value is injected.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from automel.data.augment.common import random_spans


@dataclass(frozen=True)
class SpecAugmentLevel:
    """Up to ``time_masks`` spans of at most ``time_width`` frames (and at most ``time_ratio`` of the
    utterance's real length: Park et al.'s ``p``) and ``freq_masks`` bands of at most ``freq_width``
    mel bins; widths are uniform from 0. Each utterance is masked with probability ``prob``."""

    time_masks: int
    time_width: int
    time_ratio: float
    freq_masks: int
    freq_width: int
    prob: float = 1.0


# Park et al. mask F = 27 of 80 bins and T = 100 frames of ~15 s utterances; these are scaled to 40 bins
# and 64-256-frame training crops, nearer the speaker-recognition recipes (WeSpeaker: 1 x 8 bins, 1 x 10 frames).
SPEC_LEVELS: dict[str, SpecAugmentLevel | None] = {
    "off": None,
    "light": SpecAugmentLevel(time_masks=1, time_width=10, time_ratio=0.1, freq_masks=1, freq_width=4, prob=0.6),
    "strong": SpecAugmentLevel(time_masks=2, time_width=20, time_ratio=0.2, freq_masks=2, freq_width=8),
}


def spec_augment(x: Tensor, mask: Tensor, level: SpecAugmentLevel, generator: torch.Generator) -> Tensor:
    """Time and frequency masks on raw log-mel ``x (B, T, F)`` (Park et al. 2019); ``mask (B, T)``.

    Masked values become the utterance's mean over its real frames, per mel bin, so a time mask is a span
    of identical frames and a frequency mask a constant band. Real frames are taken to come first (as
    :mod:`automel.data.batching` builds them). Returns a new tensor; padded frames are unchanged.
    """
    batch, frames, bins = x.shape
    device, real = x.device, mask.unsqueeze(-1)
    length = mask.sum(1)  # (B,)
    mean = x.masked_fill(~real, 0.0).sum(1) / length.clamp_min(1).unsqueeze(1).to(x.dtype)  # (B, F)
    time_width = torch.minimum(torch.full_like(length, level.time_width),
                               (length * level.time_ratio).floor().to(length.dtype))
    hide = torch.zeros((batch, frames, bins), dtype=torch.bool, device=device)
    if level.time_masks:
        hide = hide | random_spans(level.time_masks, time_width, length, frames, device, generator).unsqueeze(2)
    if level.freq_masks:
        full = torch.full_like(length, bins)
        band = torch.full_like(length, min(level.freq_width, bins))
        hide = hide | random_spans(level.freq_masks, band, full, bins, device, generator).unsqueeze(1)
    chosen = torch.rand((batch,), device=device, generator=generator) < level.prob
    hide = hide & real & chosen.view(batch, 1, 1)
    return torch.where(hide, mean.unsqueeze(1).expand_as(x), x)
