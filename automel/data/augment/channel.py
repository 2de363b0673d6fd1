"""Channel perturbation in the log-mel domain: noise, gain, tilt, EQ and band limits (the microphone and line).

A small data set often has each speaker through one recording and one channel, while the test comes
through another. This family imitates the channel: additive stationary noise at a random SNR, mixed in the
power domain with a stable ``logaddexp``; then a random gain (a constant offset), spectral tilt (a linear
ramp over mel bins) and a smooth EQ (a few low-order cosines), which colour speech and noise alike as a
microphone would; then, with some probability, the bandwidth of a telephone line or a codec.

**Band limits.** A telephone line passes 300-3400 Hz (ITU-T G.712); codecs cut at 4 kHz (anything sampled
at 8 kHz), 5.5 kHz (a low-rate MP3 or AAC) and 7 kHz (wideband speech, G.722: 50-7000 Hz). Frequencies
outside the band are removed before the filterbank, so each mel bin keeps the share of its filter inside the
band (:meth:`FrontEnd.band_fraction`: a steep roll-off over the one or two bins that straddle a cut-off), at
most :data:`BAND_DEPTH_DB` down, and the share removed is filled with the utterance's noise floor, its
quietest real cell, as a codec's output is never silent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from automel.data.augment.common import NAT_PER_DB, chance, log_mean_power, random_index, smooth_curve, uniform
from automel.data.augment.mel import FrontEnd

TELEPHONE = (300.0, 3400.0)
BANDS: tuple[tuple[float, float], ...] = (TELEPHONE, (0.0, 4000.0), (0.0, 5500.0), (50.0, 7000.0))
BAND_DEPTH_DB = 60.0  # how far below the signal a removed band sits at most (before the noise floor)


@dataclass(frozen=True)
class ChannelLevel:
    """Ranges in dB, drawn uniformly per utterance. ``tilt_db`` is the ramp's total rise from the lowest
    to the highest mel bin; ``eq_db`` bounds a curve of ``eq_components`` cosines; noise is added with
    probability ``noise_prob`` at an SNR in ``snr_db``, its spectrum coloured by a curve bounded by
    ``noise_color_db`` and fluctuating per frame and bin by ``noise_jitter_db`` (std). With probability
    ``band_prob`` the utterance is band-limited to one of ``bands`` (Hz), chosen uniformly."""

    gain_db: tuple[float, float] = (0.0, 0.0)
    tilt_db: tuple[float, float] = (0.0, 0.0)
    eq_db: float = 0.0
    eq_components: int = 3
    noise_prob: float = 0.0
    snr_db: tuple[float, float] = (30.0, 30.0)
    noise_color_db: float = 0.0
    noise_jitter_db: float = 0.0
    band_prob: float = 0.0
    bands: tuple[tuple[float, float], ...] = BANDS


CHANNEL_LEVELS: dict[str, ChannelLevel | None] = {
    "off": None,
    "light": ChannelLevel(gain_db=(-3.0, 3.0), tilt_db=(-3.0, 3.0), eq_db=2.0, noise_prob=0.5,
                          snr_db=(15.0, 30.0), noise_color_db=6.0, noise_jitter_db=1.0, band_prob=0.15),
    "strong": ChannelLevel(gain_db=(-6.0, 6.0), tilt_db=(-8.0, 8.0), eq_db=4.0, noise_prob=0.8,
                           snr_db=(5.0, 30.0), noise_color_db=10.0, noise_jitter_db=2.0, band_prob=0.3),
}


def band_gains(frontend: FrontEnd, bands: tuple[tuple[float, float], ...]) -> np.ndarray:
    """``(len(bands), n_mels)`` float32 natural-log gains of each band limit: 0 inside, at most
    :data:`BAND_DEPTH_DB` down outside (the log of :meth:`FrontEnd.band_fraction`)."""
    floor = 10.0 ** (-BAND_DEPTH_DB / 10.0)
    rows = []
    for low, high in bands:
        fraction = frontend.band_fraction(low, high)
        rows.append(np.log(np.where(fraction > 1.0 - 1e-9, 1.0, np.maximum(fraction, floor))))
    return np.stack(rows).astype(np.float32)


def band_limit(x: Tensor, mask: Tensor, gains: Tensor, chosen: Tensor) -> Tensor:
    """Band-limit raw log-mel ``x (B, T, F)`` by per-utterance log gains ``gains (B, F)`` where ``chosen (B,)``.

    Each bin keeps ``exp(gain)`` of its power, and the share removed, ``1 - exp(gain)``, is filled at the
    utterance's noise floor (its quietest real cell). A bin with gain 0 comes back bitwise; so do padded frames.
    """
    batch = x.shape[0]
    real = mask.unsqueeze(-1)
    floor = x.masked_fill(~real, math.inf).amin(dim=(1, 2))  # (B,)
    removed = torch.log1p(-gains.exp())  # (B, F): -inf where nothing is removed
    limited = torch.logaddexp(x + gains.unsqueeze(1), floor.view(batch, 1, 1) + removed.unsqueeze(1))
    return torch.where(real & chosen.view(batch, 1, 1), limited, x)


def channel_perturb(x: Tensor, mask: Tensor, level: ChannelLevel, generator: torch.Generator,
                    gains: Tensor | None = None) -> Tensor:
    """Noise at a random SNR, then gain, tilt and EQ, then band limits, on raw log-mel ``x (B, T, F)``.

    The SNR is against the utterance's mean power over real frames and bins; the noise's log-power at
    ``(b, t, f)`` is ``log mean_power_b - SNR_b ln10/10 + colour_b(f) + jitter``, with the colour shifted
    so its mean power over bins is 1 and the log-normal jitter so its mean is 1. ``gains (len(bands), F)``
    are the bands' :func:`band_gains` on ``x``'s device (default: computed for the HW4 front end).
    Returns a new tensor; padded frames (``mask (B, T)`` False) are unchanged.
    """
    batch, frames, bins = x.shape
    device, real = x.device, mask.unsqueeze(-1)
    nat = NAT_PER_DB
    log_power = log_mean_power(x, mask)
    snr = uniform(*level.snr_db, (batch,), device, generator) * nat
    color_amp = torch.full((batch,), level.noise_color_db * nat, device=device)
    color_tilt = uniform(-level.noise_color_db, level.noise_color_db, (batch,), device, generator) * nat
    color = smooth_curve(color_amp, color_tilt, bins, 3, device, generator)  # (B, F)
    color = color - (torch.logsumexp(color, dim=1, keepdim=True) - math.log(bins))
    sigma = level.noise_jitter_db * nat
    jitter = sigma * torch.randn((batch, frames, bins), device=device, generator=generator) - sigma**2 / 2
    noise = (log_power - snr).view(batch, 1, 1) + color.unsqueeze(1) + jitter
    noisy = torch.rand((batch,), device=device, generator=generator) < level.noise_prob
    out = torch.where(noisy.view(batch, 1, 1), torch.logaddexp(x, noise), x)
    # the channel: a constant gain plus a tilt and smooth EQ over mel bins, the same for every frame
    gain = uniform(*level.gain_db, (batch,), device, generator) * nat
    tilt = uniform(*level.tilt_db, (batch,), device, generator) * nat
    eq_amp = torch.full((batch,), level.eq_db * nat, device=device)
    response = gain.unsqueeze(1) + smooth_curve(eq_amp, tilt, bins, level.eq_components, device, generator)
    out = torch.where(real, out + response.unsqueeze(1), x)
    if level.band_prob <= 0 or not level.bands:
        return out
    if gains is None:
        gains = torch.as_tensor(band_gains(FrontEnd().with_bins(bins), level.bands), device=device)
    which = random_index(torch.full((batch,), len(level.bands), device=device), generator)
    return band_limit(out, mask, gains[which], chance(level.band_prob, batch, device, generator))
