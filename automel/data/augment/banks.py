"""Noise and impulse-response banks: a folder of audio converted once to log-mel with the data set's front end.

``--noise DIR`` takes any recordings (MUSAN's noise and music, DEMAND, your own); ``--rir DIR`` takes room
impulse responses (e.g. the RIRs of Ko et al. 2017). Every WAV, FLAC and OGG file under the folder is read at
any sample rate and resampled, then put through the data set's front end (:class:`FrontEnd`: the one its
``metadata.json`` records, else the HW4 one), so the bank lives in the same log-mel domain as the features:

- a **noise bank** is one ``(N, F)`` array: every file's fbank frames, one after the other (at most
  :data:`MAX_NOISE_FRAMES`, shared evenly between the files when there are more);
- an **RIR bank** is ``(K, L, F)``: per response, its per-band energy envelope relative to the direct path.
  The response is aligned so its peak (the direct path) sits at the centre of the first frame's window; the
  envelope is each frame's fbank power over the first frame's, capped at 1 and cut below -60 dB, over
  :data:`~automel.data.augment.reverb.MAX_TAIL_S` (at most :data:`MAX_RIRS` responses, evenly chosen).

The result is cached as ``<home>/cache/<kind>-<fingerprint>/`` (``bank.npy`` and ``bank.json``); the
fingerprint covers the files' paths, sizes and times and the front end, so a changed folder is converted
again. A file that cannot be decoded is skipped and listed (a note, and ``Bank.skipped``); a folder that is
missing, empty or holds no decodable audio is a :class:`DataError` naming it. :func:`load_bank` brings a
bank to a device once per process.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from automel.data.augment.mel import FrontEnd
from automel.data.augment.reverb import MAX_TAIL_S, tail_frames
from automel.data.frontend import compute_fbank, load_audio
from automel.data.prepare import AUDIO_SUFFIXES
from automel.errors import DataError

log = logging.getLogger(__name__)

NOISE, RIR = "noise", "rir"
KINDS = (NOISE, RIR)
OPTION = {NOISE: "`noise`", RIR: "`rir`"}  # how messages name the folders: the API's parameters (automel.errors)
BANK_VERSION = 1
MAX_NOISE_FRAMES = 360_000  # an hour at a 10 ms hop: 58 MB of float32 at 40 bins
MAX_RIRS = 2_000
_ARRAY, _INFO = "bank.npy", "bank.json"
_TAIL_FLOOR = 1e-6  # -60 dB: an envelope below this is cut


@dataclass(frozen=True)
class Bank:
    """A converted bank: ``array`` is the cached ``bank.npy``; ``size`` counts frames (noise) or responses (RIR)."""

    kind: str
    source: Path
    fingerprint: str
    path: Path
    files: int
    size: int
    skipped: tuple[str, ...]
    frontend: str  # the front end it was converted with, in words
    assumed: bool  # the data set records no front end: the HW4 one was assumed

    @property
    def array(self) -> Path:
        return self.path / _ARRAY


def audio_files(kind: str, folder: Path) -> list[Path]:
    """The audio files under ``folder``, sorted; :class:`DataError` naming it when it is missing or has none."""
    option = OPTION[kind]
    if not folder.exists():
        raise DataError(f"{option} {folder}: no such folder")
    if not folder.is_dir():
        raise DataError(f"{option} {folder}: not a folder; give a folder of audio files")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{option} {folder}: holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
    return files


def check_folders(noise: Path | None, rir: Path | None) -> None:
    """Refuse a missing or empty ``--noise``/``--rir`` folder at once, before any work (:func:`audio_files`)."""
    for kind, folder in ((NOISE, noise), (RIR, rir)):
        if folder is not None:
            audio_files(kind, Path(folder))


def fingerprint(kind: str, folder: Path, files: list[Path], frontend: FrontEnd) -> str:
    """Hash of the kind, the front end and the files' relative paths, sizes and modification times."""
    digest = hashlib.sha256(f"v{BANK_VERSION}:{kind}:{folder.resolve()}:".encode())
    digest.update(json.dumps(dataclasses.asdict(frontend.fbank), sort_keys=True).encode())
    for path in files:
        st = path.stat()
        digest.update(f"{path.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:20]


def prepare_bank(kind: str, folder: Path, frontend: FrontEnd, home: Path) -> Bank:
    """The bank of ``folder`` converted with ``frontend``, from the cache under ``home`` or converted now."""
    folder = Path(folder)
    files = audio_files(kind, folder)
    key = fingerprint(kind, folder, files, frontend)
    target = Path(home) / "cache" / f"{kind}-{key}"
    bank = _open_cached(target)
    if bank is None:
        bank = _convert(kind, folder, files, frontend, key, target)
    if frontend.assumed:
        log.info(f"the data set records no audio front end; {OPTION[kind]} {folder} is converted with the HW4 "
                 f"one ({frontend.describe()})")
    for line in bank.skipped:
        log.info(f"{OPTION[kind]}: skipped {line}")
    return bank


@functools.lru_cache(maxsize=8)
def load_bank(array: str, device: str) -> torch.Tensor:
    """A cached bank's array (``Bank.array``) as float32 on ``device``, read and copied there once per process."""
    return torch.from_numpy(np.load(array)).to(torch.device(device), torch.float32)


def _open_cached(target: Path) -> Bank | None:
    try:
        info = json.loads((target / _INFO).read_text(encoding="utf-8"))
        shape = np.load(target / _ARRAY, mmap_mode="r").shape
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(info, dict) or info.get("version") != BANK_VERSION or list(shape) != info.get("shape"):
        return None
    return Bank(info["kind"], Path(info["source"]), info["fingerprint"], target, info["files"], shape[0],
                tuple(info["skipped"]), info["frontend"], info["assumed"])


def _convert(kind: str, folder: Path, files: list[Path], frontend: FrontEnd, key: str, target: Path) -> Bank:
    from automel.outputs import atomic_folder

    if kind == RIR and len(files) > MAX_RIRS:
        files = [files[i] for i in np.linspace(0, len(files) - 1, MAX_RIRS).round().astype(int)]
    arrays: list[np.ndarray] = []
    skipped: list[str] = []
    for path in files:
        try:
            arrays.append(_fbank(path, frontend) if kind == NOISE else _envelope(path, frontend))
        except _Unusable as exc:
            skipped.append(f"{path.relative_to(folder)} ({exc})")
    if not arrays:
        shown = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        raise DataError(f"{OPTION[kind]} {folder}: holds no decodable audio ({shown})")
    bank = _noise_array(arrays) if kind == NOISE else np.stack(arrays)
    info: dict[str, Any] = {"version": BANK_VERSION, "kind": kind, "source": str(folder.resolve()), "fingerprint": key,
                            "files": len(arrays), "shape": list(bank.shape), "skipped": skipped,
                            "frontend": frontend.describe(), "assumed": frontend.assumed}
    with atomic_folder(target, replace=True, needed=bank.nbytes + 4096) as tmp:
        np.save(tmp / _ARRAY, bank)
        (tmp / _INFO).write_text(json.dumps(info, indent=1), encoding="utf-8")
    return Bank(kind, folder.resolve(), key, target, len(arrays), bank.shape[0], tuple(skipped),
                frontend.describe(), frontend.assumed)


class _Unusable(Exception):
    """Why one file of a bank folder cannot be used (it is skipped and listed)."""


def _decode(path: Path, frontend: FrontEnd) -> np.ndarray:
    try:
        wave = load_audio(path, frontend.fbank.sample_rate)
    except (RuntimeError, ValueError, OSError, EOFError, TypeError) as exc:  # soundfile: RuntimeError subclasses
        detail = getattr(exc, "error_string", None) or str(exc).replace(str(path), "<file>")
        raise _Unusable(f"cannot decode: {' '.join(str(detail).split())[:160] or type(exc).__name__}") from None
    if wave.size == 0 or not np.isfinite(wave).all():
        raise _Unusable("no audio samples" if wave.size == 0 else "samples are NaN or infinite")
    return wave


def _fbank(path: Path, frontend: FrontEnd) -> np.ndarray:
    features = compute_fbank(_decode(path, frontend), frontend.fbank)
    if features.shape[0] == 0:
        raise _Unusable(f"shorter than one {frontend.fbank.frame_length_ms:g} ms frame")
    return features


def _envelope(path: Path, frontend: FrontEnd) -> np.ndarray:
    """``(L, F)`` per-band energy envelope of an impulse response, 1 at lag 0 (see the module's docs)."""
    wave = _decode(path, frontend)
    peak = int(np.abs(wave).argmax())
    if wave[peak] == 0:
        raise _Unusable("silent")
    centre = frontend.fbank.min_samples() // 2  # the direct path at the centre of the first frame's window
    wave = np.concatenate([np.zeros(max(0, centre - peak), np.float32), wave[max(0, peak - centre):],
                           np.zeros(frontend.fbank.min_samples(), np.float32)])  # at least one whole frame
    features = compute_fbank(0.5 * wave / np.abs(wave).max(), frontend.fbank).astype(np.float64)
    length = tail_frames(MAX_TAIL_S, frontend.hop_s)
    features = features[:length]
    floor = features.min()
    envelope = np.exp(features - features[:1])  # relative to the direct path, per band
    envelope[1:] = np.where((features[1:] > floor + 1.0) & (envelope[1:] >= _TAIL_FLOOR),
                            np.minimum(envelope[1:], 1.0), 0.0)
    out = np.zeros((length, features.shape[1]), np.float32)
    out[: len(envelope)] = envelope
    return out


def _noise_array(arrays: list[np.ndarray]) -> np.ndarray:
    total = sum(len(a) for a in arrays)
    if total > MAX_NOISE_FRAMES:
        share = max(1, MAX_NOISE_FRAMES // len(arrays))
        arrays = [a[:share] for a in arrays]
    return np.ascontiguousarray(np.concatenate(arrays), dtype=np.float32)


def bank_note(bank: Bank) -> str:
    """One line describing a bank, for a command's output."""
    unit = "frames" if bank.kind == NOISE else "responses"
    return (f"{OPTION[bank.kind]} {bank.source}: {bank.files} files, {bank.size} {unit} "
            f"({bank.frontend}{', assumed' if bank.assumed else ''}; cache {bank.path.name})")

