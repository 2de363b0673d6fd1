"""The audio front end shared by ``data prepare`` and the synthetic corpus.

Kaldi-style 40-bin log-mel fbank, 25 ms window, 10 ms hop at 16 kHz (kaldi-native-fbank), computed on
the int16 sample scale as HW4's features were (their mean sits near 15, not near -5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

SAMPLE_RATE = 16_000
INT16_SCALE = 32_768.0


@dataclass(frozen=True)
class FbankParams:
    """Feature parameters; recorded in ``metadata.json`` under ``"automel_features"``."""

    sample_rate: int = SAMPLE_RATE
    n_mels: int = 40
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window: str = "povey"
    dither: float = 0.0
    waveform_scale: float = INT16_SCALE

    def to_json(self) -> dict[str, Any]:
        return {"frontend": "kaldi-native-fbank", **asdict(self)}

    def min_samples(self) -> int:
        """Samples needed for one frame."""
        return int(self.sample_rate * self.frame_length_ms / 1000)


def load_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Decode WAV/FLAC/OGG to mono float32 in [-1, 1] at ``sample_rate`` (stereo is averaged).

    Raises whatever soundfile raises for an unreadable file; callers decide whether to skip it.
    """
    import soundfile as sf
    import soxr

    wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = wave.mean(axis=1)
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def compute_fbank(wave: np.ndarray, params: FbankParams = FbankParams()) -> np.ndarray:
    """Log-mel fbank of a mono waveform in [-1, 1]: ``(samples,) -> (T, n_mels)`` float32."""
    import kaldi_native_fbank as knf

    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = params.sample_rate
    opts.frame_opts.frame_length_ms = params.frame_length_ms
    opts.frame_opts.frame_shift_ms = params.frame_shift_ms
    opts.frame_opts.window_type = params.window
    opts.frame_opts.dither = params.dither
    opts.mel_opts.num_bins = params.n_mels
    fbank = knf.OnlineFbank(opts)
    fbank.accept_waveform(params.sample_rate, np.asarray(wave, dtype=np.float32) * params.waveform_scale)
    fbank.input_finished()
    frames = fbank.num_frames_ready
    if frames == 0:
        return np.zeros((0, params.n_mels), dtype=np.float32)
    return np.stack([fbank.get_frame(i) for i in range(frames)]).astype(np.float32, copy=False)
