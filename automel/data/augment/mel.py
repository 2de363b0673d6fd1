"""Where a data set's mel bins lie in frequency and time: its front end, recorded or assumed.

Kaldi's fbank (what ``automel data prepare`` and the synthetic corpus compute, via kaldi-native-fbank)
has ``n_mels`` triangular filters equally spaced on the mel scale ``1127 ln(1 + f / 700)`` between
``low_freq`` (20 Hz) and ``high_freq`` (0: the Nyquist frequency), each rising from its left neighbour's
centre to its own and falling to its right neighbour's. A prepared data set records its front end in
``metadata.json`` (``automel.features``); an HW4 ``.pt`` data set records none, and the HW4 front end is
assumed: 40-bin Kaldi fbank, 25 ms window, 10 ms hop, 16 kHz (:data:`HW4_FRONTEND`).

Band limits, tonal noise and reverberation tails read frequencies and the frame hop from here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from automel.data.frontend import FbankParams
from automel.errors import DataError

KALDI_FRONTEND = "kaldi-native-fbank"
KALDI_LOW_HZ = 20.0  # kaldi's default low_freq; high_freq 0 means the Nyquist frequency
HW4_FRONTEND = "40-bin Kaldi fbank, 25 ms window, 10 ms hop, 16 kHz"
HW4_FBANK = FbankParams()
_GRID = 8192  # points of the linear-frequency grid that integrates the filters


def hz_to_mel(hz: np.ndarray | Tensor | float) -> Any:
    """Kaldi's mel scale, ``1127 ln(1 + f / 700)``, on NumPy arrays, tensors or floats."""
    if isinstance(hz, Tensor):
        return 1127.0 * torch.log1p(hz / 700.0)
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


@dataclass(frozen=True)
class FrontEnd:
    """A data set's fbank front end and its filters' frequency range; ``assumed``: none was recorded."""

    fbank: FbankParams = HW4_FBANK
    low_hz: float = KALDI_LOW_HZ
    high_hz: float = 0.0  # <= 0: the Nyquist frequency plus this (Kaldi's convention)
    assumed: bool = True

    @classmethod
    def of(cls, info: Mapping[str, Any], n_mels: int) -> FrontEnd:
        """The front end a data set's ``metadata.json`` records (``info`` is its ``automel`` object), else the
        HW4 one with ``n_mels`` bins. :class:`DataError` when the record disagrees with the features' width."""
        recorded = info.get("features") if isinstance(info, Mapping) else None
        if not isinstance(recorded, Mapping) or recorded.get("frontend") != KALDI_FRONTEND:
            return cls(dataclasses.replace(HW4_FBANK, n_mels=n_mels))
        known = {f.name for f in dataclasses.fields(FbankParams)}
        try:
            fbank = FbankParams(**{k: v for k, v in recorded.items() if k in known})
        except TypeError as exc:
            raise DataError(f"metadata.json: the recorded front end is malformed ({exc})") from None
        if fbank.n_mels != n_mels:
            raise DataError(f"metadata.json: the recorded front end gives {fbank.n_mels} mel bins but the "
                            f"features have {n_mels}")
        low = recorded.get("low_freq", recorded.get("fmin", KALDI_LOW_HZ))
        high = recorded.get("high_freq", recorded.get("fmax", 0.0))
        return cls(fbank, float(low), float(high), assumed=False)

    def with_bins(self, n_mels: int) -> FrontEnd:
        """This front end for features of ``n_mels`` bins (an assumed one adapts; a recorded one must match)."""
        if n_mels == self.fbank.n_mels:
            return self
        if not self.assumed:
            raise DataError(f"features have {n_mels} mel bins but the recorded front end gives {self.fbank.n_mels}")
        return dataclasses.replace(self, fbank=dataclasses.replace(self.fbank, n_mels=n_mels))

    @property
    def hop_s(self) -> float:
        return self.fbank.frame_shift_ms / 1000.0

    @property
    def nyquist(self) -> float:
        return self.fbank.sample_rate / 2.0

    @property
    def top_hz(self) -> float:
        return self.high_hz if self.high_hz > 0 else self.nyquist + self.high_hz

    def centres_mel(self) -> np.ndarray:
        """``(n_mels,)`` filter centres on the mel scale; neighbours are :meth:`spacing_mel` apart."""
        return hz_to_mel(self.low_hz) + self.spacing_mel() * np.arange(1, self.fbank.n_mels + 1)

    def spacing_mel(self) -> float:
        return float((hz_to_mel(self.top_hz) - hz_to_mel(self.low_hz)) / (self.fbank.n_mels + 1))

    def centres_hz(self) -> np.ndarray:
        return 700.0 * np.expm1(self.centres_mel() / 1127.0)

    def weights(self, hz: np.ndarray) -> np.ndarray:
        """``(len(hz), n_mels)`` triangular filter weights at the frequencies ``hz``."""
        distance = np.abs(hz_to_mel(hz)[:, None] - self.centres_mel()[None, :]) / self.spacing_mel()
        return np.clip(1.0 - distance, 0.0, None)

    def band_fraction(self, low_hz: float, high_hz: float) -> np.ndarray:
        """``(n_mels,)`` share of each filter's output that a flat spectrum keeps inside ``[low_hz, high_hz]``:
        1 well inside the band, 0 well outside, in between for a filter that straddles a cut-off."""
        grid = np.linspace(0.0, self.nyquist, _GRID)
        weights = self.weights(grid)
        inside = (grid >= low_hz) & (grid <= high_hz)
        total = weights.sum(0)
        return np.where(total > 0, (weights * inside[:, None]).sum(0) / np.maximum(total, 1e-12), 1.0)

    def describe(self) -> str:
        if self.assumed:
            return HW4_FRONTEND if self.fbank == HW4_FBANK else f"{HW4_FRONTEND} (with {self.fbank.n_mels} bins)"
        f = self.fbank
        return (f"{f.n_mels}-bin Kaldi fbank, {f.frame_length_ms:g} ms window, {f.frame_shift_ms:g} ms hop, "
                f"{f.sample_rate / 1000:g} kHz")


def tone_weights(hz: Tensor, centres_mel: Tensor, spacing_mel: float) -> Tensor:
    """``(..., F)`` filter weights of pure tones at ``hz (...)``, on the tensors' device (no host round trip)."""
    distance = (hz_to_mel(hz).unsqueeze(-1) - centres_mel).abs() / spacing_mel
    return (1.0 - distance).clamp_min(0.0)
