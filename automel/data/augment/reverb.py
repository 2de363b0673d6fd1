"""Reverberation in the log-mel domain: per mel band, the direct path plus an exponentially decaying tail.

A room's impulse response, seen through a filterbank, is in each band a direct-path spike followed by a
tail whose power decays exponentially, by 60 dB over the reverberation time RT60 (Polack 1993, "Playing
billiards in the concert hall: the mathematical foundations of geometrical room acoustics"). In the
short-time power domain, reverberant speech is then close to the clean power convolved along time, band by
band, with that envelope, the model behind late-reverberation estimates such as Lebart et al. 2001 ("A new
method based on spectral subtraction for speech dereverberation"). Training on reverberated copies is
what Ko et al. 2017 ("A study on data augmentation of reverberant speech for robust speech recognition")
do with waveforms; here it runs on the features. So per utterance and band ``f``:

    P_rev(t, f) = P(t, f) + sum_{k >= 1} h_f(k) P(t - k, f),   h_f(k) = A_f exp(-ln(10^6) k hop / RT60_f)

with ``A_f`` set so the tail holds ``10^(-DRR/10)`` of the direct path's energy (DRR: the direct-to-reverberant
ratio), and ``RT60_f`` falling linearly from RT60 at the lowest band to ``(1 - hf_damping) RT60`` at the
highest (air and wall absorption shorten high-frequency decay). The convolution is causal and runs as one
grouped ``conv1d`` over frames (a kernel per utterance and band). The direct path is kept as it is, so every
cell only gains power. With a recorded bank (``--rir DIR``, :mod:`automel.data.augment.banks`), a share of
the utterances uses a recorded response's per-band energy envelope as its kernel instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from automel.data.augment.common import chance, random_index, uniform

DECAY_60 = math.log(1e6)  # natural-log power drop over RT60 (60 dB)
MAX_TAIL_S = 1.0  # the kernel's longest tail (a decay at RT60 0.8 s is 75 dB down by then)


@dataclass(frozen=True)
class ReverbLevel:
    """Reverberation with probability ``prob`` per utterance: RT60 uniform in ``rt60_s`` (seconds), DRR
    uniform in ``drr_db``; RT60 at the top band ``1 - hf_damping`` times that at the bottom. With a recorded
    bank, a reverberated utterance uses a recorded kernel with probability ``recorded_prob``."""

    prob: float
    rt60_s: tuple[float, float]
    drr_db: tuple[float, float]
    hf_damping: float = 0.3
    recorded_prob: float = 0.5


REVERB_LEVELS: dict[str, ReverbLevel | None] = {
    "off": None,
    "light": ReverbLevel(prob=0.3, rt60_s=(0.2, 0.5), drr_db=(3.0, 12.0)),
    "strong": ReverbLevel(prob=0.6, rt60_s=(0.2, 0.8), drr_db=(-3.0, 8.0)),
}


def tail_frames(rt60_s: float, hop_s: float) -> int:
    """Kernel length in frames (direct path included) for decays up to ``rt60_s``, at most :data:`MAX_TAIL_S`."""
    return min(math.ceil(rt60_s / hop_s), math.ceil(MAX_TAIL_S / hop_s)) + 1


def exponential_kernels(rt60_s: Tensor, drr_db: Tensor, bins: int, hop_s: float, length: int,
                        hf_damping: float = 0.0) -> Tensor:
    """``(B, F, L)`` power kernels: 1 at lag 0 (the direct path), then the exponential tail of ``rt60_s (B,)``
    (damped towards high bands by ``hf_damping``) holding ``10^(-drr_db/10)`` of the direct energy."""
    device = rt60_s.device
    position = torch.arange(bins, device=device, dtype=torch.float32) / max(bins - 1, 1)  # 0 bottom .. 1 top
    band_rt60 = rt60_s.unsqueeze(1) * (1.0 - hf_damping * position)  # (B, F)
    lags = torch.arange(1, length, device=device, dtype=torch.float32)  # (L - 1,)
    tail = torch.exp(-DECAY_60 * hop_s * lags / band_rt60.unsqueeze(-1))  # (B, F, L - 1)
    energy = torch.pow(10.0, -drr_db / 10.0).view(-1, 1, 1)
    tail = tail * energy / tail.sum(-1, keepdim=True).clamp_min(1e-30)
    return torch.cat([torch.ones_like(tail[..., :1]), tail], dim=-1)


def reverberate(x: Tensor, mask: Tensor, kernels: Tensor, chosen: Tensor) -> Tensor:
    """Convolve the power of raw log-mel ``x (B, T, F)`` along time with ``kernels (B, F, L)`` where
    ``chosen (B,)``; ``mask (B, T)``, real frames first. Padded frames contribute nothing and are returned
    bitwise, as are rows not chosen."""
    batch, frames, bins = x.shape
    length = kernels.shape[-1]
    real = mask.unsqueeze(-1)
    top = x.masked_fill(~real, -math.inf).amax(dim=(1, 2))
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top)).view(batch, 1, 1)  # keeps exp in range
    power = torch.exp(x - top).masked_fill(~real, 0.0)
    signal = F.pad(power.permute(0, 2, 1).reshape(1, batch * bins, frames), (length - 1, 0))
    weight = kernels.flip(-1).reshape(batch * bins, 1, length).to(signal.dtype)
    wet = F.conv1d(signal, weight, groups=batch * bins).view(batch, bins, frames).permute(0, 2, 1)
    wet = wet.clamp_min(torch.finfo(wet.dtype).tiny).log() + top
    return torch.where(real & chosen.view(batch, 1, 1), wet, x)


def add_reverb(x: Tensor, mask: Tensor, level: ReverbLevel, generator: torch.Generator, hop_s: float,
               bank: Tensor | None = None) -> Tensor:
    """Reverberate each utterance of raw log-mel ``x (B, T, F)`` with probability ``level.prob``; ``mask (B, T)``.

    ``bank (K, L, F)`` holds recorded kernels (lag 0 = 1) on ``x``'s device; with it, a reverberated
    utterance uses one of them with probability ``level.recorded_prob``. Returns a new tensor.
    """
    batch, _, bins = x.shape
    device = x.device
    rt60 = uniform(*level.rt60_s, (batch,), device, generator)
    drr = uniform(*level.drr_db, (batch,), device, generator)
    length = max(tail_frames(level.rt60_s[1], hop_s), bank.shape[1] if bank is not None else 0)
    kernels = exponential_kernels(rt60, drr, bins, hop_s, length, level.hf_damping)
    if bank is not None:
        pick = random_index(torch.full((batch,), bank.shape[0], device=device), generator)
        recorded = F.pad(bank[pick].permute(0, 2, 1), (0, length - bank.shape[1]))  # (B, F, L)
        use = chance(level.recorded_prob, batch, device, generator)
        kernels = torch.where(use.view(batch, 1, 1), recorded, kernels)
    return reverberate(x, mask, kernels, chance(level.prob, batch, device, generator))
