"""Seeded, shifted copies of the validation utterances: what ``objective="robust"`` also scores a run on.

A speaker is enrolled on one recording and tested on another: another microphone, room and noise. A trial
judged on clean validation utterances only is rewarded for fitting their channel. ``robust`` also scores it
on copies heard "elsewhere", and the search ranks trials on the mean of both accuracies.

The shifts come from generators the training augmentation (:mod:`automel.data.augment`) does not use, so a
trial cannot score well merely by having trained on the very perturbation it is judged on:

- **resonances**: two to four peaks and notches, Gaussian bumps over the mel bins of ±3 to ±9 dB at random
  centres and widths (a loudspeaker or a room mode), where training draws a smooth cosine EQ and a tilt;
- **drifting coloured noise**: a ``1/f^a`` spectrum (``a`` in 0..2) whose level follows a slow random walk
  over frames, mixed at 5-20 dB SNR, where training's noise is stationary, babble or bursts;
- **automatic gain control**: a slow gain swing of ±2-6 dB with a period of 1-5 s.

Features are natural-log mel energies ``x (B, T, F)`` with ``mask (B, T)``. Every utterance draws its own
shift from a generator seeded by ``(SEED, batch number)``: validation batches come in a fixed order, so a
run sees the same copies at every validation, and every trial of a study sees the same ones.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from automel.data.augment.common import NAT_PER_DB, mix_at_snr, uniform

OBJECTIVES = ("clean", "robust")
SEED = 20_210_504  # fixed: the copies are part of the objective, the same for every trial
FRAMES_PER_SECOND = 100.0  # the HW4 front end's 10 ms hop; only the AGC's period depends on it
SNR_DB = (5.0, 20.0)


def shifted(x: Tensor, mask: Tensor, batch_number: int) -> Tensor:
    """``x (B, T, F)`` heard through another channel and in drifting noise (padding frames unchanged)."""
    generator = torch.Generator(device=x.device)
    generator.manual_seed(SEED + batch_number)
    batch, frames, bins = x.shape
    out = x.float() + _resonances(batch, bins, x.device, generator).unsqueeze(1)
    out = out + _gain_swing(batch, frames, x.device, generator).unsqueeze(2)
    noise = _drifting_noise(batch, frames, bins, x.device, generator)
    snr = uniform(*SNR_DB, (batch,), x.device, generator)
    out = mix_at_snr(out, mask, noise, snr, torch.ones(batch, dtype=torch.bool, device=x.device))
    return torch.where(mask.unsqueeze(-1), out, x.float()).to(x.dtype)


def _resonances(batch: int, bins: int, device: torch.device, generator: torch.Generator) -> Tensor:
    """``(B, F)`` log gains: a sum of 2-4 Gaussian peaks (+) and notches (-) of 3-9 dB over the mel bins."""
    position = torch.arange(bins, device=device, dtype=torch.float32)
    count = 4
    centre = uniform(0.0, bins - 1.0, (batch, count), device, generator)
    width = uniform(1.0, max(2.0, bins / 8.0), (batch, count), device, generator)
    depth = uniform(3.0, 9.0, (batch, count), device, generator) * NAT_PER_DB
    sign = torch.where(torch.rand((batch, count), device=device, generator=generator) < 0.5, -1.0, 1.0)
    used = (torch.arange(count, device=device) < torch.randint(2, count + 1, (batch, 1), device=device,
                                                               generator=generator)).float()  # 2-4 of them
    bumps = torch.exp(-0.5 * ((position.view(1, 1, -1) - centre.unsqueeze(-1)) / width.unsqueeze(-1)) ** 2)
    return (bumps * (sign * depth * used).unsqueeze(-1)).sum(1)


def _gain_swing(batch: int, frames: int, device: torch.device, generator: torch.Generator) -> Tensor:
    """``(B, T)`` log gains: a sinusoid of ±2-6 dB with a period of 1-5 s and a random phase (an AGC)."""
    time = torch.arange(frames, device=device, dtype=torch.float32) / FRAMES_PER_SECOND
    depth = uniform(2.0, 6.0, (batch, 1), device, generator) * NAT_PER_DB
    period = uniform(1.0, 5.0, (batch, 1), device, generator)
    phase = uniform(0.0, 2.0 * math.pi, (batch, 1), device, generator)
    return depth * torch.sin(2.0 * math.pi * time.unsqueeze(0) / period + phase)


def _drifting_noise(batch: int, frames: int, bins: int, device: torch.device, generator: torch.Generator
                    ) -> Tensor:
    """``(B, T, F)`` log power of ``1/f^a`` noise whose level walks slowly over frames (±~3 dB a second)."""
    position = (torch.arange(bins, device=device, dtype=torch.float32) + 1.0) / bins  # (F,) 1/F .. 1
    slope = uniform(0.0, 2.0, (batch, 1), device, generator)
    colour = -slope * torch.log(position)  # (B, F): log(1/f^a) = -a log f, over the mel position
    steps = torch.randn((batch, frames), device=device, generator=generator) * (3.0 * NAT_PER_DB)
    level = torch.cumsum(steps, 1) / math.sqrt(FRAMES_PER_SECOND)  # a random walk: ~3 dB per second
    texture = torch.randn((batch, frames, bins), device=device, generator=generator) * (2.0 * NAT_PER_DB)
    return colour.unsqueeze(1) + level.unsqueeze(2) + texture
