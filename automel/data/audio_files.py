"""Audio files as inference takes them: recognised by content, decoded whatever their name, checked in range.

- A file is audio when libsndfile can read it, whatever its extension: a WAV named ``.mp3`` and an MP3
  named ``.wav`` both work (libsndfile 1.1+ decodes MP3), and a text file named ``.wav`` is refused by
  what it holds. In a folder, files are picked by the extensions libsndfile knows (a folder's README is
  not an utterance); a file given by name is sniffed.
- Files are opened by Python and handed to soundfile as a file object: soundfile encodes a path string
  strictly, so a valid WAV whose name is not UTF-8 would otherwise fail (and with it its whole folder).
- Samples must be finite and within :data:`AUDIO_LIMIT` of full scale: a float WAV scaled by 1e30 is
  finite, but its fbank overflows float32 and every output becomes NaN.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from automel.data.prepare import AUDIO_SUFFIXES
from automel.errors import AudioError

__all__ = ["AUDIO_LIMIT", "audio_suffixes", "check_wave", "decode_audio", "display_name", "is_audio_file"]

# Float audio is nominally within [-1, 1]; a clipped float mix may exceed it a little. A thousand times
# full scale (+60 dB) is no recording, and the fbank of it is still far from float32's overflow.
AUDIO_LIMIT = 1e3
_NOT_DECODABLE = {"raw"}  # headerless: libsndfile needs its format spelled out


@functools.cache
def audio_suffixes() -> frozenset[str]:
    """The extensions of the formats this machine's libsndfile reads (``.wav``, ``.flac``, ``.mp3``...)."""
    import soundfile as sf

    known = {f".{name.lower()}" for name in sf.available_formats() if name.lower() not in _NOT_DECODABLE}
    return frozenset(AUDIO_SUFFIXES | known | {".aif", ".oga", ".opus"})


def is_audio_file(path: Path) -> bool:
    """Whether libsndfile recognises ``path``'s content as audio (its name plays no part)."""
    import soundfile as sf

    try:
        with open(path, "rb") as fh:
            sf.info(fh)
    except Exception:  # soundfile raises several types for a file that is not audio
        return False
    return True


def decode_audio(path: Path, sample_rate: int) -> np.ndarray:
    """Decode ``path`` by content to mono float32 at ``sample_rate`` (stereo averaged); raises what soundfile
    and soxr raise for an unreadable file, as :func:`automel.data.frontend.load_audio` does."""
    import soundfile as sf
    import soxr

    with open(path, "rb") as fh:
        wave, rate = sf.read(fh, dtype="float32", always_2d=True)
    mono = wave.mean(axis=1)
    check_wave(mono, path)  # before resampling: soxr of 1e30 samples is inf already
    if rate != sample_rate:
        mono = soxr.resample(mono, rate, sample_rate)
    return np.ascontiguousarray(mono, dtype=np.float32)


def check_wave(wave: np.ndarray, path: Path) -> None:
    """:class:`AudioError` naming ``path`` when its samples are NaN, infinite or absurdly loud."""
    if not np.isfinite(wave).all():
        raise AudioError(f"{display_name(path)}: samples are NaN or infinite")
    peak = float(np.abs(wave).max()) if wave.size else 0.0
    if peak > AUDIO_LIMIT:
        raise AudioError(f"{display_name(path)}: samples reach {peak:.3g}, more than {AUDIO_LIMIT:g} times full "
                         "scale; not a recording (rescale it to [-1, 1])")


def display_name(path: Path | str | bytes) -> str:
    """``path`` as printable text: bytes of a name that are not UTF-8 shown as ``\\xe9`` escapes."""
    raw = path if isinstance(path, bytes) else os.fsencode(str(path))
    return raw.decode("utf-8", "backslashreplace")
