"""Loading one ``uttr-*.pt`` feature file safely.

Files are read with ``torch.load(..., weights_only=True)`` only: a pickle that would run code (or build
any object that is not a plain tensor) is refused by the loader and never executed.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np

from automel.errors import DataError


def load_feature(path: Path, n_mels: int) -> np.ndarray:
    """Load ``path`` as float32 ``(T, n_mels)``; raise :class:`DataError` naming the file and the fault."""
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: missing feature file") from None
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: refused: not a plain tensor file ({_refusal_reason(exc)})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DataError(f"{path}: corrupt or truncated feature file ({type(exc).__name__})") from None
    if not isinstance(obj, torch.Tensor):
        raise DataError(f"{path}: holds a {type(obj).__name__}, not a tensor")
    if not obj.is_floating_point():
        raise DataError(f"{path}: tensor has dtype {obj.dtype}, expected a float tensor")
    if obj.ndim != 2 or obj.shape[1] != n_mels or obj.shape[0] == 0:
        raise DataError(f"{path}: shape {tuple(obj.shape)}, expected (T>0, {n_mels})")
    array = obj.detach().to(torch.float32).numpy()
    if not np.isfinite(array).all():
        raise DataError(f"{path}: contains NaN or inf values")
    return array


def _refusal_reason(exc: Exception) -> str:
    """The loader's one-line reason (e.g. ``Unsupported global: GLOBAL io.open ...``), not torch's preamble,
    which carries terminal escapes and advice to load the file unsafely."""
    for line in str(exc).splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].strip().split(". ")[0][:120]
    return "unreadable pickle"
