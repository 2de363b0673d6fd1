"""Loading one ``uttr-*.pt`` feature file safely.

Files are read with ``torch.load(..., weights_only=True)`` only: a pickle that would run code (or build
any object that is not a plain tensor) is refused by the loader and never executed. Whatever else is
wrong with a file (garbage bytes, a truncated or bit-flipped archive, a folder or a device named ``.pt``)
ends in one :class:`DataError` naming the file, never in the loader's own exception.

A feature file that is a symbolic link pointing outside the data set is refused, not followed: a data
set from someone else cannot make automel read (and copy into its cache) files elsewhere on the machine.
A link to another file inside the data set is fine; to use features stored elsewhere, copy them in.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
import warnings
import zipfile
from pathlib import Path

import numpy as np

from automel.data.layout import Utterance
from automel.errors import DataError

_CONTROL = re.compile(r"\x1b\[[0-9;]*[A-Za-z]|[\x00-\x1f\x7f]")
# Log-mel values are logs (or decibels) of energies: HW4's sit near 15, kaldi's floor is about -16 and dB
# scales reach a few hundred. A value beyond this is no log-mel at all (raw power, a scaling bug, an
# attack), and squaring it inside a model overflows float32 into NaN outputs, so it is refused here.
FEATURE_LIMIT = 1e4


def load_utterance(root: Path, utterance: Utterance, n_mels: int) -> np.ndarray:
    """Load the feature file of ``utterance`` in the data set ``root`` and check it against its entry.

    The per-file checks every command runs (when the feature cache is built) and ``data check`` reports:
    the file lies inside ``root``, is a plain float tensor ``(mel_len, n_mels)`` and holds finite values.
    """
    path = Path(root) / utterance.feature_path
    array = load_feature(path, n_mels, inside=Path(root))
    if array.shape[0] != utterance.mel_len:
        raise DataError(f"{path}: mel_len is {utterance.mel_len} but the tensor has {array.shape[0]} frames")
    return array


def load_feature(path: Path, n_mels: int, inside: Path | None = None) -> np.ndarray:
    """Load ``path`` as float32 ``(T, n_mels)``; raise :class:`DataError` naming the file and the fault.

    With ``inside`` (the data set's folder), a symbolic link that leads out of it is refused unread.
    """
    import torch

    _check_file(path, inside)
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": the error line says enough
            warnings.simplefilter("ignore")
            _check_archive(path)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path}: missing feature file") from None
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: refused: not a plain tensor file ({_refusal_reason(exc)})") from None
    except Exception as exc:  # the loaders raise almost anything on garbage (KeyError, IndexError, ...)
        raise DataError(f"{path}: corrupt, truncated or not a torch tensor file ({_reason(exc)})") from None
    return checked_features(obj, n_mels, str(path))


def checked_features(obj: object, n_mels: int, where: str) -> np.ndarray:
    """``obj`` (a tensor or array) as float32 ``(T, n_mels)``; :class:`DataError` starting with ``where``
    if it is no float matrix of that width, is empty, or holds NaN or inf."""
    import torch

    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "fiub":  # object, string, complex, records: torch.from_numpy cannot take them
            raise DataError(f"{where}: array has dtype {obj.dtype}, expected a float array (T, {n_mels})")
        obj = torch.from_numpy(obj)
    if not isinstance(obj, torch.Tensor):
        raise DataError(f"{where}: holds a {type(obj).__name__}, not a tensor")
    if obj.is_meta or obj.layout != torch.strided:
        kind = "meta tensor (shape only, no values)" if obj.is_meta else f"{obj.layout} tensor"
        raise DataError(f"{where}: a {kind}; give a dense tensor that holds its values")
    if not obj.is_floating_point():
        raise DataError(f"{where}: tensor has dtype {obj.dtype}, expected a float tensor")
    if obj.ndim != 2 or obj.shape[1] != n_mels or obj.shape[0] == 0:
        raise DataError(f"{where}: shape {tuple(obj.shape)}, expected (T>0, {n_mels})")
    array = obj.detach().cpu().to(torch.float32).numpy()
    if not np.isfinite(array).all():
        raise DataError(f"{where}: contains NaN or inf values")
    peak = float(np.abs(array).max())
    if peak > FEATURE_LIMIT:
        raise DataError(f"{where}: values reach {peak:.3g}, outside any plausible log-mel range "
                        f"(|x| <= {FEATURE_LIMIT:g}); are these log-mel features?")
    return array


def _check_file(path: Path, inside: Path | None) -> None:
    """A regular file, and (with ``inside``) not a symbolic link leading out of that folder."""
    try:
        if inside is not None and path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(inside.resolve()):
                raise DataError(f"{path}: refused: a symbolic link to {target}, outside the data set "
                                "(copy the file into the data set instead)")
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: missing feature file") from None
    except (OSError, RuntimeError) as exc:  # a symlink loop is a RuntimeError before Python 3.13
        raise DataError(f"{path}: cannot be read ({_reason(exc)})") from None
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: not a regular file")


def _check_archive(path: Path) -> None:
    """Check the CRC-32 of every record: ``torch.save`` writes a zip archive, and ``torch.load`` does not
    check them, so a flipped bit in the tensor data would otherwise load as a silently wrong value.
    A file that is no zip archive is left to ``torch.load`` (the legacy format, or garbage it refuses)."""
    if not zipfile.is_zipfile(path):
        return
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
    if bad is not None:
        raise DataError(f"{path}: corrupt feature file (archive record {_clean(bad)!r} fails its CRC or header check)")


def _refusal_reason(exc: Exception) -> str:
    """The loader's one-line reason (e.g. ``Unsupported global: GLOBAL io.open ...``), not torch's preamble,
    which carries terminal escapes and advice to load the file unsafely."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        after = text.split("WeightsUnpickler error:", 1)[1]
        reason = next((line.strip() for line in after.splitlines() if line.strip()), "")
        return _clean(reason.split(". ")[0]) or "unreadable pickle"
    return _reason(exc)


def _reason(exc: BaseException) -> str:
    """``Type: first line of the message``, short and without control characters, or just the type when
    the message is empty or is torch's advice to load the file unsafely."""
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    if "weights_only" in first or "PyTorch 2.6" in first:
        first = ""
    first = _clean(first.split(". ")[0])
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _clean(text: str) -> str:
    return _CONTROL.sub("", text)[:120]
