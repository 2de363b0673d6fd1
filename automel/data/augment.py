"""Training-batch augmentation on raw log-mel features: SpecAugment and channel perturbation.

A small data set often has each speaker through one recording and one channel, while the test comes
through another. Two kinds of augmentation, each ``"off" | "light" | "strong"`` (:data:`SPEC_LEVELS`,
:data:`CHANNEL_LEVELS`), act on a training batch ``x (B, T, F)`` of *raw* natural-log mel energies (about
-20..+15; the model normalises inside itself, after this) with ``mask (B, T)`` (True = real frame):

- **SpecAugment** (Park et al. 2019, "SpecAugment: A Simple Data Augmentation Method for Automatic
  Speech Recognition"): time and frequency masks. Park et al. fill with 0 after mean normalisation;
  on raw features the equivalent is each utterance's mean over its real frames, per mel bin, so no
  extreme value is injected.
- **Channel perturbation** in the log-mel domain: additive noise at a random SNR, mixed in the power
  domain with a stable ``logaddexp``, then a random gain (a constant offset), spectral tilt (a linear
  ramp over mel bins) and a smooth EQ (a few low-order cosines), which colour speech and noise alike as
  a microphone would.

Padded frames (mask False) are returned bitwise unchanged. Random numbers come from a
``torch.Generator`` on the batch's own device and every step is a tensor op (no ``.item()``, no
``nonzero``, no boolean indexing), so a CUDA batch is augmented without a host sync and without a
host-to-device copy; the price is that CPU and CUDA draw different (each reproducible) numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from automel.train.config import TrainParams

__all__ = ["CHANNEL_LEVELS", "LEVELS", "NAT_PER_DB", "SPEC_LEVELS", "Augmenter", "ChannelLevel",
           "SpecAugmentLevel", "channel_perturb", "db_to_nat", "spec_augment"]


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


@dataclass(frozen=True)
class ChannelLevel:
    """Ranges in dB, drawn uniformly per utterance. ``tilt_db`` is the ramp's total rise from the lowest
    to the highest mel bin; ``eq_db`` bounds a curve of ``eq_components`` cosines; noise is added with
    probability ``noise_prob`` at an SNR in ``snr_db``, its spectrum coloured by a curve bounded by
    ``noise_color_db`` and fluctuating per frame and bin by ``noise_jitter_db`` (std)."""

    gain_db: tuple[float, float] = (0.0, 0.0)
    tilt_db: tuple[float, float] = (0.0, 0.0)
    eq_db: float = 0.0
    eq_components: int = 3
    noise_prob: float = 0.0
    snr_db: tuple[float, float] = (30.0, 30.0)
    noise_color_db: float = 0.0
    noise_jitter_db: float = 0.0


LEVELS = ("off", "light", "strong")
# Park et al. mask F = 27 of 80 bins and T = 100 frames of ~15 s utterances; these are scaled to 40 bins
# and 64-256-frame training crops, nearer the speaker-recognition recipes (WeSpeaker: 1 x 8 bins, 1 x 10 frames).
SPEC_LEVELS: dict[str, SpecAugmentLevel | None] = {
    "off": None,
    "light": SpecAugmentLevel(time_masks=1, time_width=10, time_ratio=0.1, freq_masks=1, freq_width=4, prob=0.6),
    "strong": SpecAugmentLevel(time_masks=2, time_width=20, time_ratio=0.2, freq_masks=2, freq_width=8),
}
CHANNEL_LEVELS: dict[str, ChannelLevel | None] = {
    "off": None,
    "light": ChannelLevel(gain_db=(-3.0, 3.0), tilt_db=(-3.0, 3.0), eq_db=2.0, noise_prob=0.5,
                          snr_db=(15.0, 30.0), noise_color_db=6.0, noise_jitter_db=1.0),
    "strong": ChannelLevel(gain_db=(-6.0, 6.0), tilt_db=(-8.0, 8.0), eq_db=4.0, noise_prob=0.8,
                           snr_db=(5.0, 30.0), noise_color_db=10.0, noise_jitter_db=2.0),
}


NAT_PER_DB = math.log(10.0) / 10.0


def db_to_nat(db: float) -> float:
    """A power ratio in dB as a natural-log offset: ``dB * ln(10) / 10`` (6 dB is about 1.38)."""
    return db * NAT_PER_DB


def _uniform(low: float, high: float, shape: tuple[int, ...], device: torch.device,
             generator: torch.Generator) -> Tensor:
    return low + (high - low) * torch.rand(shape, device=device, generator=generator)


def _smooth_curve(amplitude: Tensor, tilt: Tensor, n_bins: int, components: int, device: torch.device,
                  generator: torch.Generator) -> Tensor:
    """``(B, F)`` natural-log curves: a linear ramp rising ``tilt (B,)`` over the band, centred on 0, plus
    ``components`` cosines ``cos(pi k (f + 1/2) / F)``, k = 1.., whose sum stays within ``amplitude (B,)``."""
    position = (torch.arange(n_bins, device=device, dtype=torch.float32) + 0.5) / n_bins  # (F,)
    curve = tilt.unsqueeze(1) * (position - 0.5)
    if components > 0:
        k = torch.arange(1, components + 1, device=device, dtype=torch.float32)
        basis = torch.cos(math.pi * k.unsqueeze(1) * position.unsqueeze(0))  # (K, F)
        weights = _uniform(-1.0, 1.0, (len(tilt), components), device, generator) / components
        curve = curve + amplitude.unsqueeze(1) * (weights @ basis)
    return curve


def channel_perturb(x: Tensor, mask: Tensor, level: ChannelLevel, generator: torch.Generator) -> Tensor:
    """Noise at a random SNR, then gain, tilt and EQ, on raw log-mel ``x (B, T, F)``; ``mask (B, T)``.

    The SNR is against the utterance's mean power over real frames and bins; the noise's log-power at
    ``(b, t, f)`` is ``log mean_power_b - SNR_b ln10/10 + colour_b(f) + jitter``, with the colour shifted
    so its mean power over bins is 1 and the log-normal jitter so its mean is 1. Returns a new tensor.
    """
    batch, frames, bins = x.shape
    device, real = x.device, mask.unsqueeze(-1)
    nat = NAT_PER_DB
    # log of the mean power over real frames and bins, without leaving the log domain
    count = (mask.sum(1) * bins).clamp_min(1).to(torch.float32)
    log_power = torch.logsumexp(x.masked_fill(~real, -math.inf).flatten(1), dim=1) - count.log()  # (B,)
    snr = _uniform(*level.snr_db, (batch,), device, generator) * nat
    color_amp = torch.full((batch,), level.noise_color_db * nat, device=device)
    color_tilt = _uniform(-level.noise_color_db, level.noise_color_db, (batch,), device, generator) * nat
    color = _smooth_curve(color_amp, color_tilt, bins, 3, device, generator)  # (B, F)
    color = color - (torch.logsumexp(color, dim=1, keepdim=True) - math.log(bins))
    sigma = level.noise_jitter_db * nat
    jitter = sigma * torch.randn((batch, frames, bins), device=device, generator=generator) - sigma**2 / 2
    noise = (log_power - snr).view(batch, 1, 1) + color.unsqueeze(1) + jitter
    noisy = torch.rand((batch,), device=device, generator=generator) < level.noise_prob
    out = torch.where(noisy.view(batch, 1, 1), torch.logaddexp(x, noise), x)
    # the channel: a constant gain plus a tilt and smooth EQ over mel bins, the same for every frame
    gain = _uniform(*level.gain_db, (batch,), device, generator) * nat
    tilt = _uniform(*level.tilt_db, (batch,), device, generator) * nat
    eq_amp = torch.full((batch,), level.eq_db * nat, device=device)
    response = gain.unsqueeze(1) + _smooth_curve(eq_amp, tilt, bins, level.eq_components, device, generator)
    return torch.where(real, out + response.unsqueeze(1), x)


def _spans(count: int, max_width: Tensor, extent: Tensor, size: int, device: torch.device,
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
        hide = hide | _spans(level.time_masks, time_width, length, frames, device, generator).unsqueeze(2)
    if level.freq_masks:
        full = torch.full_like(length, bins)
        band = torch.full_like(length, min(level.freq_width, bins))
        hide = hide | _spans(level.freq_masks, band, full, bins, device, generator).unsqueeze(1)
    chosen = torch.rand((batch,), device=device, generator=generator) < level.prob
    hide = hide & real & chosen.view(batch, 1, 1)
    return torch.where(hide, mean.unsqueeze(1).expand_as(x), x)


class Augmenter:
    """``augmenter(x (B, T, F), mask (B, T)) -> x``: channel perturbation, then SpecAugment, on a training batch.

    Built once per run from the training parameters and the run's seed; a no-op (returning ``x`` itself)
    when both kinds are ``"off"``. It keeps one generator per device, seeded from a stream derived from
    ``seed`` (not ``seed`` itself, which the crop sampler already uses), so a run is reproducible on a
    given device. Validation and prediction batches are never augmented.
    """

    def __init__(self, specaugment: str | SpecAugmentLevel | None = "off",
                 channel: str | ChannelLevel | None = "off", seed: int = 0) -> None:
        for value in (specaugment, channel):
            if isinstance(value, str) and value not in LEVELS:
                raise ValueError(f"augmentation level {value!r} is not one of {', '.join(LEVELS)}")
        self.spec = SPEC_LEVELS[specaugment] if isinstance(specaugment, str) else specaugment
        self.channel = CHANNEL_LEVELS[channel] if isinstance(channel, str) else channel
        self.seed = int(np.random.SeedSequence([seed, 0xA06]).generate_state(1)[0])
        self._generators: dict[torch.device, torch.Generator] = {}

    @classmethod
    def from_params(cls, params: TrainParams, seed: int) -> Augmenter:
        """From ``train.specaugment`` and ``train.channel_aug``."""
        return cls(params.specaugment, params.channel_aug, seed)

    @property
    def active(self) -> bool:
        return self.spec is not None or self.channel is not None

    def generator(self, device: torch.device) -> torch.Generator:
        """The generator for ``device``: its own on an accelerator, a CPU one for CPU and ``meta``."""
        key = device if device.type not in ("cpu", "meta") else torch.device("cpu")
        if key not in self._generators:
            made = torch.Generator() if key.type == "cpu" else torch.Generator(device=key)
            self._generators[key] = made.manual_seed(self.seed)
        return self._generators[key]

    def __call__(self, x: Tensor, mask: Tensor) -> Tensor:
        if not self.active:
            return x
        generator = self.generator(x.device)
        out = x.float()
        if self.channel is not None:
            out = channel_perturb(out, mask, self.channel, generator)
        if self.spec is not None:
            out = spec_augment(out, mask, self.spec, generator)
        return out.to(x.dtype)
