"""Training-batch augmentation on raw log-mel features: rooms, noise, channels and SpecAugment.

A small data set often has each speaker through one recording, one room and one channel, while the test
comes through others. Four families of augmentation, each a training parameter with the levels ``"off" |
"light" | "strong"`` (:data:`LEVELS`), act on a training batch ``x (B, T, F)`` of *raw* natural-log mel
energies (about -20..+15; the model normalises inside itself, after this) with ``mask (B, T)`` (True = real
frame), in this order:

1. ``train.reverb_aug``: **reverberation** (:mod:`.reverb`), per mel band the direct path plus an
   exponentially decaying tail of random RT60, or a recorded response's envelope (``--rir DIR``);
2. ``train.noise_aug``: **real noise** (:mod:`.noise`) at a random SNR down to 0 dB: babble of the batch's
   other utterances, generated bursts, modulated noise and hum, or a recorded bank (``--noise DIR``);
3. ``train.channel_aug``: **the channel** (:mod:`.channel`): stationary noise, gain, tilt and EQ, and
   telephone and codec band limits;
4. ``train.specaugment``: **SpecAugment** time and frequency masks (:mod:`.specaugment`, Park et al. 2019).

Padded frames (mask False) are returned bitwise unchanged. Random numbers come from a
``torch.Generator`` on the batch's own device and every step is a tensor op (no ``.item()``, no
``nonzero``, no boolean indexing), so a CUDA batch is augmented without a host sync and without a
host-to-device copy; the price is that CPU and CUDA draw different (each reproducible) numbers. Frequencies
and the frame hop come from the data set's front end (:class:`FrontEnd`: recorded, else HW4's).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np
import torch
from torch import Tensor

from automel.data.augment.channel import (
    BANDS,
    CHANNEL_LEVELS,
    ChannelLevel,
    band_gains,
    band_limit,
    channel_perturb,
)
from automel.data.augment.common import LEVELS, NAT_PER_DB, db_to_nat, log_mean_power, mix_at_snr
from automel.data.augment.mel import HW4_FRONTEND, FrontEnd
from automel.data.augment.noise import (
    NOISE_LEVELS,
    MelAxis,
    NoiseLevel,
    add_noise,
    babble,
    bank_noise,
    burst_envelope,
    generated_noise,
    hum_spectrum,
    modulation_envelope,
)
from automel.data.augment.reverb import REVERB_LEVELS, ReverbLevel, add_reverb, exponential_kernels, reverberate
from automel.data.augment.specaugment import SPEC_LEVELS, SpecAugmentLevel, spec_augment
from automel.errors import DataError

if TYPE_CHECKING:
    from automel.data.store import FeatureStore
    from automel.train.config import RunSettings, TrainParams

__all__ = ["BANDS", "CHANNEL_LEVELS", "HW4_FRONTEND", "LEVELS", "NAT_PER_DB", "NOISE_LEVELS", "REVERB_LEVELS",
           "SPEC_LEVELS", "Augmenter", "ChannelLevel", "FrontEnd", "MelAxis", "NoiseLevel", "ReverbLevel",
           "SpecAugmentLevel", "add_noise", "add_reverb", "babble", "band_gains", "band_limit", "bank_noise",
           "burst_envelope", "channel_perturb", "db_to_nat", "exponential_kernels", "generated_noise",
           "hum_spectrum", "log_mean_power", "mix_at_snr", "modulation_envelope", "reverberate", "spec_augment"]

Level = TypeVar("Level")
BankSource = str | Path | Tensor | None  # a converted bank's ``bank.npy``, or the array itself


def _level(table: Mapping[str, Level | None], value: str | Level | None) -> Level | None:
    if isinstance(value, str):
        if value not in LEVELS:
            raise ValueError(f"augmentation level {value!r} is not one of {', '.join(LEVELS)}")
        return table[value]
    return value


@dataclass
class _OnDevice:
    """What the augmenter keeps per device and width: the band limits' gains and the mel axis."""

    gains: Tensor
    axis: MelAxis


class Augmenter:
    """``augmenter(x (B, T, F), mask (B, T)) -> x``: reverberation, noise, the channel, then SpecAugment.

    Built once per run from the training parameters and the run's seed (:meth:`for_run`: also the data set's
    front end and the run's banks); a no-op (returning ``x`` itself) when every family is ``"off"``. It keeps
    one generator per device, seeded from a stream derived from ``seed`` (not ``seed`` itself, which the crop
    sampler already uses), so a run is reproducible on a given device. ``noise_bank`` and ``rir_bank`` are
    converted banks (:mod:`automel.data.augment.banks`), read and moved to a device the first time a batch
    there needs them. Validation and prediction batches are never augmented.
    """

    def __init__(self, specaugment: str | SpecAugmentLevel | None = "off",
                 channel: str | ChannelLevel | None = "off", seed: int = 0, *,
                 noise: str | NoiseLevel | None = "off", reverb: str | ReverbLevel | None = "off",
                 frontend: FrontEnd | None = None, noise_bank: BankSource = None, rir_bank: BankSource = None) -> None:
        self.spec = _level(SPEC_LEVELS, specaugment)
        self.channel = _level(CHANNEL_LEVELS, channel)
        self.noise = _level(NOISE_LEVELS, noise)
        self.reverb = _level(REVERB_LEVELS, reverb)
        self.frontend = frontend or FrontEnd()
        self.banks = {"noise": noise_bank, "rir": rir_bank}
        self.seed = int(np.random.SeedSequence([seed, 0xA06]).generate_state(1)[0])
        self._generators: dict[torch.device, torch.Generator] = {}
        self._on_device: dict[tuple[torch.device, int], _OnDevice] = {}

    @classmethod
    def from_params(cls, params: TrainParams, seed: int, frontend: FrontEnd | None = None,
                    noise_bank: BankSource = None, rir_bank: BankSource = None) -> Augmenter:
        """From ``train.specaugment``, ``train.channel_aug``, ``train.noise_aug`` and ``train.reverb_aug``."""
        return cls(params.specaugment, params.channel_aug, seed, noise=params.noise_aug, reverb=params.reverb_aug,
                   frontend=frontend, noise_bank=noise_bank, rir_bank=rir_bank)

    @classmethod
    def for_run(cls, params: TrainParams, settings: RunSettings, store: FeatureStore) -> Augmenter:
        """The augmenter of one training run: ``params``' levels, the run's seed and banks
        (``settings.noise_bank``, ``settings.rir_bank``) and the front end ``store``'s data set records."""
        frontend = FrontEnd.of(store.dataset.info, store.n_mels)
        return cls.from_params(params, settings.seed, frontend, settings.noise_bank, settings.rir_bank)

    @property
    def active(self) -> bool:
        return any(level is not None for level in (self.spec, self.channel, self.noise, self.reverb))

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
        if self.reverb is not None:
            out = add_reverb(out, mask, self.reverb, generator, self.frontend.hop_s, self._bank("rir", out))
        if self.noise is not None:
            axis = self._constants(out).axis
            out = add_noise(out, mask, self.noise, generator, axis, self._bank("noise", out))
        if self.channel is not None:
            gains = self._constants(out).gains if self.channel.band_prob > 0 else None
            out = channel_perturb(out, mask, self.channel, generator, gains)
        if self.spec is not None:
            out = spec_augment(out, mask, self.spec, generator)
        return out.to(x.dtype)

    def _constants(self, x: Tensor) -> _OnDevice:
        """Band gains and the mel axis for ``x``'s device and width, made once."""
        key = (x.device, x.shape[-1])
        if key not in self._on_device:
            frontend = self.frontend.with_bins(x.shape[-1])
            bands = self.channel.bands if self.channel is not None else BANDS
            gains = torch.as_tensor(band_gains(frontend, bands), device=x.device)
            centres = torch.as_tensor(frontend.centres_mel(), dtype=torch.float32, device=x.device)
            axis = MelAxis(centres, frontend.spacing_mel(), frontend.hop_s, frontend.nyquist)
            self._on_device[key] = _OnDevice(gains, axis)
        return self._on_device[key]

    def _bank(self, kind: str, x: Tensor) -> Tensor | None:
        """The ``kind`` bank on ``x``'s device (None without one); :class:`DataError` if its width differs."""
        source = self.banks[kind]
        if source is None:
            return None
        if isinstance(source, Tensor):
            bank = source.to(x.device, torch.float32)
        else:
            from automel.data.augment.banks import load_bank

            bank = load_bank(str(source), str(x.device))
        if bank.shape[-1] != x.shape[-1]:
            raise DataError(f"the {kind} bank {source if not isinstance(source, Tensor) else ''} has "
                            f"{bank.shape[-1]} mel bins but the features have {x.shape[-1]}")
        return bank
