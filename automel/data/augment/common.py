"""What every augmentation family shares: levels, dB in natural-log units, random draws, power over real cells.

Features are raw natural-log mel energies ``x (B, T, F)`` with ``mask (B, T)`` (True = real frame, real
frames first). Power-domain arithmetic stays in the log domain (``logaddexp``, ``logsumexp``), and every
step is a tensor op drawing from a ``torch.Generator`` on the batch's device: no ``.item()``, no
``nonzero``, no boolean indexing, so a CUDA batch is augmented without a host sync.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

LEVELS = ("off", "light", "strong")
NAT_PER_DB = math.log(10.0) / 10.0


def db_to_nat(db: float) -> float:
    """A power ratio in dB as a natural-log offset: ``dB * ln(10) / 10`` (6 dB is about 1.38)."""
    return db * NAT_PER_DB


def uniform(low: float, high: float, shape: tuple[int, ...], device: torch.device,
            generator: torch.Generator) -> Tensor:
    """Uniform draws in ``[low, high)`` of ``shape`` on ``device``."""
    return low + (high - low) * torch.rand(shape, device=device, generator=generator)


def chance(prob: float, batch: int, device: torch.device, generator: torch.Generator) -> Tensor:
    """``(B,)`` True with probability ``prob``, one draw per utterance."""
    return torch.rand((batch,), device=device, generator=generator) < prob


def smooth_curve(amplitude: Tensor, tilt: Tensor, n_bins: int, components: int, device: torch.device,
                 generator: torch.Generator) -> Tensor:
    """``(B, F)`` natural-log curves: a linear ramp rising ``tilt (B,)`` over the band, centred on 0, plus
    ``components`` cosines ``cos(pi k (f + 1/2) / F)``, k = 1.., whose sum stays within ``amplitude (B,)``."""
    position = (torch.arange(n_bins, device=device, dtype=torch.float32) + 0.5) / n_bins  # (F,)
    curve = tilt.unsqueeze(1) * (position - 0.5)
    if components > 0:
        k = torch.arange(1, components + 1, device=device, dtype=torch.float32)
        basis = torch.cos(math.pi * k.unsqueeze(1) * position.unsqueeze(0))  # (K, F)
        weights = uniform(-1.0, 1.0, (len(tilt), components), device, generator) / components
        curve = curve + amplitude.unsqueeze(1) * (weights @ basis)
    return curve


def log_mean_power(x: Tensor, mask: Tensor) -> Tensor:
    """``(B,)`` log of the mean power ``exp(x)`` over each utterance's real cells (frames x bins)."""
    bins = x.shape[-1]
    count = (mask.sum(1) * bins).clamp_min(1).to(torch.float32)
    return torch.logsumexp(x.masked_fill(~mask.unsqueeze(-1), -math.inf).flatten(1), dim=1) - count.log()


def mix_at_snr(x: Tensor, mask: Tensor, noise: Tensor, snr_db: Tensor, chosen: Tensor) -> Tensor:
    """Add ``noise (B, T, F)`` (log power, any level) to ``x`` in the power domain at exactly ``snr_db (B,)``.

    The SNR is the ratio of the utterance's mean power to the noise's, both over the utterance's real cells,
    so ``10 log10(sum exp(x) / sum (exp(out) - exp(x)))`` over real cells is ``snr_db`` up to rounding. Only
    rows with ``chosen (B,)`` change, and only on real frames; everything else is returned bitwise.
    """
    batch = x.shape[0]
    shift = log_mean_power(x, mask) - snr_db * NAT_PER_DB - log_mean_power(noise, mask)
    mixed = torch.logaddexp(x, noise + shift.view(batch, 1, 1))
    return torch.where(mask.unsqueeze(-1) & chosen.view(batch, 1, 1), mixed, x)


def random_spans(count: int, max_width: Tensor, extent: Tensor, size: int, device: torch.device,
                 generator: torch.Generator) -> Tensor:
    """``(B, size)`` True inside ``count`` random spans per row: width uniform in ``0..max_width (B,)``,
    start uniform so the span fits in ``0..extent (B,)``."""
    batch = len(max_width)
    width = (torch.rand((batch, count), device=device, generator=generator) * (max_width.unsqueeze(1) + 1)).floor()
    width = torch.minimum(width, max_width.unsqueeze(1).to(width.dtype))
    room = (extent.unsqueeze(1) - width).clamp_min(0)
    start = (torch.rand((batch, count), device=device, generator=generator) * (room + 1)).floor()
    start = torch.minimum(start, room)
    steps = torch.arange(size, device=device, dtype=width.dtype).view(1, 1, size)
    inside = (steps >= start.unsqueeze(2)) & (steps < (start + width).unsqueeze(2))  # (B, count, size)
    return inside.any(1)


def random_index(high: Tensor, generator: torch.Generator) -> Tensor:
    """``(B,)`` int64 uniform in ``0..high - 1`` per row (``high (B,)`` >= 1), drawn on ``high``'s device."""
    draw = torch.rand(high.shape, device=high.device, generator=generator)
    return torch.minimum((draw * high).floor().long(), high.long() - 1).clamp_min(0)
