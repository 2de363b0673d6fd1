"""Real-sounding noise in the log-mel domain: babble, generated non-stationary noise, and a recorded bank.

Each noisy utterance takes its noise from one source, chosen uniformly among those available, and mixes it
in the power domain at an SNR drawn per utterance (:func:`mix_at_snr`: exact over the utterance's real cells):

- **babble** (:func:`babble`): 1 to ``talkers`` other utterances of the same batch, each circularly shifted
  in time within its real frames and brought to unit power, summed in the power domain. Other speakers at a
  low SNR are the hardest noise for a speaker model (the babble of MUSAN's speech part, Snyder et al. 2018,
  "X-vectors: Robust DNN embeddings for speaker recognition"); taken from the batch, it costs no store access.
- **generated** (:func:`generated_noise`), one of three non-stationary kinds: *bursts* of coloured noise
  (doors, keyboards, clatter: 1-4 bursts of up to 300 ms, 30 dB above the gaps), *modulated* coloured noise
  (traffic, fans, wind: a 0.5-4 Hz sinusoidal envelope of 6-20 dB peak to peak), and *hum* (mains hum at
  50 or 60 Hz with 10 harmonics falling 3 dB each, plus a whine tone at 0.5 kHz to 3/4 of the Nyquist
  frequency, each on the mel bins its frequency falls in).
- **bank** (:func:`bank_noise`): a random crop of a recorded noise bank (``--noise DIR``, converted with the
  data set's front end by :mod:`automel.data.augment.banks`), wrapping around its end.

Coloured noise has a smooth random spectrum (a tilt of -12..+6 dB and a 6 dB EQ over the band) and a
log-normal fluctuation of 2 dB per frame and bin, as a short-time spectrum of noise has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from automel.data.augment.common import (
    NAT_PER_DB,
    chance,
    log_mean_power,
    mix_at_snr,
    random_index,
    random_spans,
    smooth_curve,
    uniform,
)
from automel.data.augment.mel import tone_weights


@dataclass(frozen=True)
class NoiseLevel:
    """Noise with probability ``prob`` per utterance, at an SNR uniform in ``snr_db``; babble of 1 to
    ``talkers`` other utterances."""

    prob: float
    snr_db: tuple[float, float]
    talkers: int = 3


NOISE_LEVELS: dict[str, NoiseLevel | None] = {
    "off": None,
    "light": NoiseLevel(prob=0.5, snr_db=(10.0, 25.0)),
    "strong": NoiseLevel(prob=0.8, snr_db=(0.0, 20.0)),
}
SOURCES = ("babble", "generated", "bank")
GENERATED = ("bursts", "modulated", "hum")
GAP_DB = 30.0  # bursts stand this far above the gaps between them
BURST_S = 0.3  # longest burst
HUM_HARMONICS = 10


@dataclass(frozen=True)
class MelAxis:
    """The mel bins as the generated noise needs them: ``centres`` (F,) on the mel scale and their spacing,
    the frame hop in seconds and the Nyquist frequency (:class:`automel.data.augment.mel.FrontEnd`)."""

    centres: Tensor
    spacing: float
    hop_s: float
    nyquist: float


def babble(x: Tensor, mask: Tensor, talkers: int, generator: torch.Generator) -> Tensor:
    """``(B, T, F)`` log power: for each row, 1 to ``talkers`` other rows of ``x``, each circularly shifted in
    time within its real frames and brought to unit mean power, summed in the power domain.

    Row ``b`` hears rows ``(b + s) mod B`` with ``s`` uniform in ``1..B - 1`` (itself, shifted, when ``B`` is 1).
    Unit power bounds every cell by the number of cells, so the sum runs in linear power without overflow.
    """
    batch, frames, bins = x.shape
    device = x.device
    lengths = mask.sum(1).clamp_min(1)  # (B,)
    unit = (x - log_mean_power(x, mask).view(batch, 1, 1)).exp().reshape(batch * frames, bins)
    rows = torch.arange(batch, device=device)
    steps = torch.arange(frames, device=device)
    count = 1 + random_index(torch.full((batch,), talkers, device=device), generator)  # (B,) in 1..talkers
    total = torch.zeros((batch, frames, bins), device=device, dtype=x.dtype)
    for j in range(talkers):
        shift = 1 + random_index(torch.full((batch,), max(batch - 1, 1), device=device), generator)
        source = (rows + shift * int(batch > 1)) % batch
        length = lengths[source]
        offset = random_index(length, generator)
        time = (steps.unsqueeze(0) + offset.unsqueeze(1)) % length.unsqueeze(1)  # (B, T) inside its real frames
        voice = unit.index_select(0, (source.unsqueeze(1) * frames + time).view(-1)).view(batch, frames, bins)
        total = total + voice * (count > j).to(x.dtype).view(batch, 1, 1)
    return total.log()


def colour(batch: int, bins: int, device: torch.device, generator: torch.Generator) -> Tensor:
    """``(B, F)`` log power of a smooth random noise spectrum: a tilt of -12..+6 dB and an EQ within 6 dB."""
    tilt = uniform(-12.0, 6.0, (batch,), device, generator) * NAT_PER_DB
    amplitude = torch.full((batch,), 6.0 * NAT_PER_DB, device=device)
    return smooth_curve(amplitude, tilt, bins, 3, device, generator)


def burst_envelope(mask: Tensor, hop_s: float, generator: torch.Generator) -> Tensor:
    """``(B, T)`` log gain: 0 in up to 4 bursts of up to :data:`BURST_S` (and at least one frame) inside the
    real frames, :data:`GAP_DB` down between them."""
    frames = mask.shape[1]
    device = mask.device
    length = mask.sum(1)
    longest = torch.minimum(torch.full_like(length, max(1, round(BURST_S / hop_s))), length)
    inside = random_spans(4, longest, length, frames, device, generator)
    onset = torch.arange(frames, device=device) == random_index(length.clamp_min(1), generator).unsqueeze(1)
    return torch.where(inside | onset, 0.0, -GAP_DB * NAT_PER_DB)


def modulation_envelope(batch: int, frames: int, hop_s: float, device: torch.device,
                        generator: torch.Generator) -> Tensor:
    """``(B, T)`` log gain: a sinusoid of 0.5-4 Hz and 6-20 dB peak to peak, of random phase."""
    rate = uniform(0.5, 4.0, (batch, 1), device, generator)
    depth = uniform(6.0, 20.0, (batch, 1), device, generator) * NAT_PER_DB / 2
    phase = uniform(0.0, 2 * math.pi, (batch, 1), device, generator)
    seconds = torch.arange(frames, device=device, dtype=torch.float32).unsqueeze(0) * hop_s
    return depth * torch.sin(2 * math.pi * rate * seconds + phase)


def hum_spectrum(batch: int, axis: MelAxis, generator: torch.Generator) -> Tensor:
    """``(B, F)`` log power: mains hum (50 or 60 Hz and :data:`HUM_HARMONICS` harmonics, 3 dB weaker each)
    plus a whine tone (0.5 kHz to 3/4 of Nyquist, -10..+10 dB against the fundamental), on the mel bins
    their frequencies fall in (:func:`tone_weights`), over a floor 40 dB below the fundamental."""
    device = axis.centres.device
    mains = torch.where(chance(0.5, batch, device, generator), 50.0, 60.0)  # (B,)
    harmonic = torch.arange(1, HUM_HARMONICS + 1, device=device, dtype=torch.float32)
    whine = uniform(500.0, 0.75 * axis.nyquist, (batch, 1), device, generator)
    freqs = torch.cat([mains.unsqueeze(1) * harmonic, whine], dim=1)  # (B, H + 1)
    level_db = torch.cat([(-3.0 * (harmonic - 1)).expand(batch, -1),
                          uniform(-10.0, 10.0, (batch, 1), device, generator)], dim=1)
    power = torch.pow(10.0, level_db / 10.0) * (freqs < axis.nyquist).to(torch.float32)  # (B, H + 1)
    spectrum = (power.unsqueeze(-1) * tone_weights(freqs, axis.centres, axis.spacing)).sum(1)  # (B, F)
    return (spectrum + 1e-4 * power[:, :1]).log()


def generated_noise(mask: Tensor, axis: MelAxis, generator: torch.Generator) -> Tensor:
    """``(B, T, F)`` log power: per row one of :data:`GENERATED`, chosen uniformly: coloured noise in bursts
    (:func:`burst_envelope`), coloured noise under a slow modulation (:func:`modulation_envelope`), or steady
    hum (:func:`hum_spectrum`). Every kind fluctuates log-normally per frame and bin, by 2 dB (std) for the
    noises, 0.5 dB for the hum; one draw serves all three."""
    batch, frames = mask.shape
    bins, device = len(axis.centres), mask.device
    kind = random_index(torch.full((batch,), len(GENERATED), device=device), generator).view(batch, 1)
    envelope = torch.where(kind == 0, burst_envelope(mask, axis.hop_s, generator),
                           modulation_envelope(batch, frames, axis.hop_s, device, generator))  # (B, T)
    is_hum = (kind == 2).view(batch, 1, 1)
    spectrum = torch.where(is_hum.view(batch, 1), hum_spectrum(batch, axis, generator),
                           colour(batch, bins, device, generator))  # (B, F)
    jitter = torch.randn((batch, frames, bins), device=device, generator=generator)
    fluctuation = jitter * torch.where(is_hum, 0.5 * NAT_PER_DB, 2.0 * NAT_PER_DB)
    return spectrum.unsqueeze(1) + envelope.masked_fill(kind == 2, 0.0).unsqueeze(-1) + fluctuation


def bank_noise(bank: Tensor, batch: int, frames: int, generator: torch.Generator) -> Tensor:
    """``(B, T, F)`` log power: a random crop of ``frames`` frames of ``bank (N, F)`` per row, wrapping around."""
    start = random_index(torch.full((batch,), bank.shape[0], device=bank.device), generator)
    index = (start.unsqueeze(1) + torch.arange(frames, device=bank.device)) % bank.shape[0]
    return bank[index]


def add_noise(x: Tensor, mask: Tensor, level: NoiseLevel, generator: torch.Generator, axis: MelAxis,
              bank: Tensor | None = None) -> Tensor:
    """Noise from one of :data:`SOURCES` per utterance, with probability ``level.prob``, at an SNR uniform in
    ``level.snr_db``, on raw log-mel ``x (B, T, F)``; ``mask (B, T)``. ``bank (N, F)`` on ``x``'s device adds
    the recorded source. Returns a new tensor; padded frames are unchanged bitwise."""
    batch, frames, _ = x.shape
    device = x.device
    sources = [babble(x, mask, level.talkers, generator), generated_noise(mask, axis, generator)]
    if bank is not None:
        sources.append(bank_noise(bank, batch, frames, generator))
    noise = _pick(sources, random_index(torch.full((batch,), len(sources), device=device), generator))
    snr = uniform(*level.snr_db, (batch,), device, generator)
    return mix_at_snr(x, mask, noise, snr, chance(level.prob, batch, device, generator))


def _pick(options: list[Tensor], which: Tensor) -> Tensor:
    """Row ``b`` of ``options[which[b]]``, for ``(B, T, F)`` options and ``which (B,)``."""
    out = options[0]
    for k, option in enumerate(options[1:], start=1):
        out = torch.where((which == k).view(-1, 1, 1), option, out)
    return out
