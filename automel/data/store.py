"""The feature store: a data set loaded once into one contiguous array with offsets, cached on disk.

The cache lives under ``<home>/cache/<fingerprint>/`` where the fingerprint covers the data set's
paths, sizes and mtimes and the storage dtype: cheap to compute, so a stale cache is noticed on every open.
The cache also records the data set's ``content_id``, a hash of its JSON files and every feature value,
computed once while the cache is built. It does not depend on where the data set lies or on file times,
so a study's workers on other machines can check that their copy is the same data. Every later run
and every search trial memory-maps it (no per-file I/O). A cache that is incomplete, the wrong size or
fails its sampled checksum is rebuilt, never trusted; a cache is built in a temporary folder and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from automel.data.features import load_utterance
from automel.data.layout import MAPPING, METADATA, TESTDATA, Hw4Dataset, read_dataset
from automel.errors import DataError, DiskError

if TYPE_CHECKING:
    import torch

StoreDtype = Literal["float32", "float16"]
CACHE_VERSION = 2
_FEATURES, _INDEX, _MANIFEST = "features.bin", "index.npz", "manifest.json"
_SAMPLE_BLOCKS, _BLOCK = 64, 1 << 16


@dataclass
class FeatureStore:
    """All utterances of a data set, train then test, as ``features[offsets[i]:offsets[i] + lengths[i]]``.

    ``features`` is ``(total_frames, n_mels)``; ``labels[i]`` is the speaker id, ``-1`` for test utterances.
    """

    dataset: Hw4Dataset
    fingerprint: str  # cache key: location, sizes, mtimes
    content_id: str  # what the data is: JSON files and feature values, wherever the copy lies
    features: torch.Tensor
    offsets: torch.Tensor  # (N,) int64
    lengths: torch.Tensor  # (N,) int64
    labels: torch.Tensor  # (N,) int64
    paths: tuple[str, ...]
    # The CPU store a device copy was made from (None for a CPU store): its lengths answer the host's
    # questions (crop starts, is this batch padded?) without waiting for the device.
    host: FeatureStore | None = field(default=None, repr=False, compare=False)
    _copies: dict[str, FeatureStore] = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_mels(self) -> int:
        return int(self.features.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.dataset.speakers)

    @property
    def device(self) -> torch.device:
        return self.features.device

    def train_indices(self) -> np.ndarray:
        return np.flatnonzero(self.labels.cpu().numpy() >= 0)

    def test_indices(self) -> np.ndarray:
        return np.flatnonzero(self.labels.cpu().numpy() < 0)

    @property
    def host_lengths(self) -> torch.Tensor:
        """``lengths`` on the CPU, read without a device sync (a device copy keeps its CPU original)."""
        return self.host.lengths if self.host is not None else self.lengths

    def to(self, device: torch.device | str) -> FeatureStore:
        """A copy living on ``device`` (e.g. the whole store on the GPU, so batches never cross the bus)."""
        moved = {k: getattr(self, k).to(device) for k in ("features", "offsets", "lengths", "labels")}
        host = self.host if self.host is not None else self
        return FeatureStore(self.dataset, self.fingerprint, self.content_id, paths=self.paths, host=host, **moved)

    def on(self, device: torch.device | str) -> FeatureStore:
        """This store on ``device``, copied there once per store and device (every trial reuses the copy)."""
        import torch

        device = torch.device(device)
        if device == self.device or (device.type == self.device.type and device.index is None):
            return self
        key = str(device)
        if key not in self._copies:
            self._copies[key] = self.to(device)
        return self._copies[key]

    def feature_stats(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-dimension mean and std ``(n_mels,)`` over the frames of ``indices`` (e.g. the training split)."""
        import torch

        total = torch.zeros(self.n_mels, dtype=torch.float64)
        square = torch.zeros(self.n_mels, dtype=torch.float64)
        count = 0
        for i in indices.tolist():
            start, length = int(self.offsets[i]), int(self.lengths[i])
            chunk = self.features[start : start + length].to("cpu", torch.float64)
            total += chunk.sum(0)
            square += (chunk * chunk).sum(0)
            count += length
        mean = total / max(count, 1)
        std = (square / max(count, 1) - mean * mean).clamp_min(1e-8).sqrt()
        return mean.float(), std.float()


def fingerprint_dataset(root: Path, dtype: StoreDtype = "float32", version: int = CACHE_VERSION) -> str:
    """Hash of the data set's JSON and feature files (relative paths, sizes, mtimes) and the dtype.

    ``version=1`` gives the fingerprint that studies created before content ids recorded."""
    root = Path(root).resolve()
    digest = hashlib.sha256(f"v{version}:{dtype}:{root}".encode())
    try:
        features = sorted(p.name for p in os.scandir(root) if p.name.endswith(".pt"))
    except OSError as exc:
        raise DataError(f"{root}: cannot list the data set's files ({exc.strerror or type(exc).__name__})") from None
    for name in [METADATA, MAPPING, TESTDATA, *features]:
        try:
            st = os.stat(root / name)
        except OSError:  # absent, a dangling or looping link: the cache build names the file
            digest.update(f"{name}:absent;".encode())
            continue
        digest.update(f"{name}:{st.st_size}:{st.st_mtime_ns};".encode())
    return digest.hexdigest()[:24]


def open_store(root: Path, home: Path, dtype: StoreDtype = "float32",
               on_progress: Callable[[int, int], None] | None = None) -> FeatureStore:
    """Open the cached store of ``root``, building (or rebuilding) it first if needed.

    ``on_progress(done, total)`` hears about a build, about a hundred times (a large data set's first
    build reads every feature file and may take minutes); it is not called when the cache is reused.

    Every open validates the data set's structure (:func:`read_dataset`); a build also checks every feature
    file (:func:`load_utterance`), so what ``data check`` rejects raises :class:`DataError` here, naming the file.
    A data set without ``testdata.json`` opens with no test utterances.
    """
    dataset = read_dataset(Path(root))
    key = fingerprint_dataset(dataset.root, dtype)
    cache = Path(home) / "cache" / key
    store = _open_cache(cache, dataset, key, dtype)
    if store is None:
        if cache.exists():
            shutil.rmtree(cache, ignore_errors=True)
        frames = sum(u.mel_len for u in (*dataset.train, *dataset.test))  # the cache's size, checked first
        with DiskError.guard(cache.parent, frames * dataset.n_mels * np.dtype(dtype).itemsize):
            _build_cache(cache, dataset, key, dtype, on_progress=on_progress)
        store = _open_cache(cache, dataset, key, dtype)
        if store is None:
            raise DataError(f"{cache}: the feature cache could not be built (is the disk full?)")
    return store


def _utterances(dataset: Hw4Dataset) -> list[tuple[str, int]]:
    train = [(u.feature_path, dataset.speaker_id(u.speaker or "")) for u in dataset.train]
    return train + [(u.feature_path, -1) for u in dataset.test]


def _build_cache(cache: Path, dataset: Hw4Dataset, key: str, dtype: StoreDtype,
                 on_progress: Callable[[int, int], None] | None = None) -> None:
    items = _utterances(dataset)
    every = max(1, len(items) // 100)
    utterances = [*dataset.train, *dataset.test]  # the order of items
    cache.parent.mkdir(parents=True, exist_ok=True)
    from automel.files import owned_tempdir  # named after this process: a later build clears it if killed

    tmp = owned_tempdir(cache)
    try:
        lengths = np.zeros(len(items), dtype=np.int64)
        content = hashlib.blake2b(f"{dtype}:".encode(), digest_size=12)
        for name in (METADATA, MAPPING, TESTDATA):
            if name != TESTDATA or (dataset.root / name).exists():  # testdata.json is optional
                content.update((dataset.root / name).read_bytes())
        with (tmp / _FEATURES).open("wb") as fh:
            for i, utterance in enumerate(utterances):
                array = load_utterance(dataset.root, utterance, dataset.n_mels)
                lengths[i] = array.shape[0]
                chunk = np.ascontiguousarray(array, dtype=dtype).tobytes()
                content.update(chunk)
                fh.write(chunk)
                if on_progress is not None and ((i + 1) % every == 0 or i + 1 == len(utterances)):
                    on_progress(i + 1, len(utterances))
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        labels = np.array([label for _, label in items], dtype=np.int64)
        np.savez(tmp / _INDEX, offsets=offsets, lengths=lengths, labels=labels)
        manifest = {"version": CACHE_VERSION, "fingerprint": key, "dtype": dtype, "n_mels": dataset.n_mels,
                    "frames": int(lengths.sum()), "paths": [n for n, _ in items], "content_id": content.hexdigest(),
                    "checksum": _sampled_checksum(tmp / _FEATURES)}
        (tmp / _MANIFEST).write_text(json.dumps(manifest))
        try:
            tmp.rename(cache)
        except OSError:
            if not cache.exists():  # another process may have won the race with an identical cache
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _open_cache(cache: Path, dataset: Hw4Dataset, key: str, dtype: StoreDtype) -> FeatureStore | None:
    import torch

    try:
        manifest = json.loads((cache / _MANIFEST).read_text())
        with np.load(cache / _INDEX) as index:
            offsets, lengths, labels = index["offsets"], index["lengths"], index["labels"]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("content_id"), str):
        return None
    paths = [n for n, _ in _utterances(dataset)]
    itemsize = np.dtype(dtype).itemsize
    expected_bytes = manifest.get("frames", -1) * dataset.n_mels * itemsize
    if (manifest.get("version") != CACHE_VERSION or manifest.get("fingerprint") != key
            or manifest.get("paths") != paths or int(lengths.sum()) != manifest.get("frames")
            or len(offsets) != len(paths) or not (cache / _FEATURES).exists()
            or (cache / _FEATURES).stat().st_size != expected_bytes
            or manifest.get("checksum") != _sampled_checksum(cache / _FEATURES)):
        return None
    array = np.memmap(cache / _FEATURES, dtype=dtype, mode="r", shape=(int(manifest["frames"]), dataset.n_mels))
    with warnings.catch_warnings():  # read-only memmap: torch warns it is not writable; we never write
        warnings.simplefilter("ignore", UserWarning)
        features = torch.from_numpy(array)
    return FeatureStore(dataset, key, manifest["content_id"], features, torch.from_numpy(offsets),
                        torch.from_numpy(lengths), torch.from_numpy(labels), tuple(paths))


def _sampled_checksum(path: Path) -> str:
    """BLAKE2 of 64 evenly spaced 64 KiB blocks plus the size: catches truncation and most corruption
    without reading gigabytes on every open."""
    size = path.stat().st_size
    digest = hashlib.blake2b(str(size).encode(), digest_size=16)
    with path.open("rb") as fh:
        for k in range(_SAMPLE_BLOCKS):
            fh.seek(max(0, (size - _BLOCK) * k // max(_SAMPLE_BLOCKS - 1, 1)))
            digest.update(fh.read(_BLOCK))
    return digest.hexdigest()
