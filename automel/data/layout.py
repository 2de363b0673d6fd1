"""The HW4 data-set layout: read it, and write it atomically.

A data set is a folder with ``metadata.json`` ``{"n_mels", "speakers": {name: [{"feature_path",
"mel_len"}]}}``, ``mapping.json`` ``{"speaker2id", "id2speaker"}`` (id2speaker keys are strings),
``testdata.json`` ``{"n_mels", "utterances": [...]}`` and one ``uttr-<hex>.pt`` per utterance holding a
float tensor ``(T, n_mels)``. Unknown keys are ignored, as HW4 readers do; automel writes its own under
``"automel"`` (the data set's kind and feature parameters).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automel.errors import DataError

METADATA, MAPPING, TESTDATA, ANSWERS = "metadata.json", "mapping.json", "testdata.json", "answers.csv"


@dataclass(frozen=True)
class Utterance:
    """One feature file; ``speaker`` is ``None`` for test utterances."""

    feature_path: str
    mel_len: int
    speaker: str | None = None


@dataclass(frozen=True)
class Hw4Dataset:
    """A data set as its JSON files describe it (features are not loaded here)."""

    root: Path
    n_mels: int
    speakers: tuple[str, ...]  # index == speaker id
    train: tuple[Utterance, ...]
    test: tuple[Utterance, ...]
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``"synthetic"`` for the generated corpus, ``"prepared"`` for ``data prepare`` output, else ``"hw4"``."""
        return str(self.info.get("kind", "hw4"))

    @property
    def name(self) -> str:
        return str(self.info.get("name") or self.root.name)

    def speaker_id(self, speaker: str) -> int:
        return self.speakers.index(speaker)


def read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def read_dataset(root: Path) -> Hw4Dataset:
    """Read the JSON files of ``root``; raise :class:`DataError` naming the file when one is unusable.

    This checks structure only; :func:`automel.data.check.check_dataset` checks every feature file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    meta = read_json(root / METADATA)
    mapping = read_json(root / MAPPING)
    n_mels = _require(meta, "n_mels", int, root / METADATA)
    speakers_meta = _require(meta, "speakers", dict, root / METADATA)
    id2speaker = _require(mapping, "id2speaker", dict, root / MAPPING)
    try:
        by_id = sorted((int(k), str(v)) for k, v in id2speaker.items())
    except ValueError:
        raise DataError(f"{root / MAPPING}: id2speaker keys must be integers written as strings") from None
    if [i for i, _ in by_id] != list(range(len(by_id))):
        raise DataError(f"{root / MAPPING}: speaker ids are not 0..{len(by_id) - 1}")
    train = tuple(
        _utterance(item, root / METADATA, speaker)
        for speaker, items in speakers_meta.items()
        for item in (items if isinstance(items, list) else [])
    )
    test: tuple[Utterance, ...] = ()
    if (root / TESTDATA).exists():
        testdata = read_json(root / TESTDATA)
        utts = _require(testdata, "utterances", list, root / TESTDATA)
        test = tuple(_utterance(item, root / TESTDATA, None) for item in utts)
    info = meta.get("automel", {}) if isinstance(meta.get("automel"), dict) else {}
    return Hw4Dataset(root, n_mels, tuple(s for _, s in by_id), train, test, info)


def _require(obj: Any, key: str, kind: type, path: Path) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise DataError(f"{path}: missing key '{key}'")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise DataError(f"{path}: '{key}' must be a {kind.__name__}")
    return value


def _utterance(item: Any, source: Path, speaker: str | None) -> Utterance:
    if not isinstance(item, dict) or not isinstance(item.get("feature_path"), str):
        raise DataError(f"{source}: an utterance entry has no 'feature_path': {item!r}")
    if not is_plain_name(item["feature_path"]):
        raise DataError(f"{source}: feature_path {item['feature_path']!r} must be a file name inside the data set")
    mel_len = item.get("mel_len")
    if not isinstance(mel_len, int) or isinstance(mel_len, bool):
        raise DataError(f"{source}: {item['feature_path']} has no integer 'mel_len'")
    return Utterance(item["feature_path"], mel_len, speaker)


def is_plain_name(name: str) -> bool:
    """HW4 feature paths are bare file names: no folders, no ``..``, nothing absolute."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def read_answers(path: Path) -> dict[str, str]:
    """Read an ``Id,Category`` CSV (a submission or an answer key) into ``{Id: Category}``."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    if not rows or [c.strip() for c in rows[0]] != ["Id", "Category"]:
        raise DataError(f"{path}: header must be 'Id,Category'")
    result: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 2:
            raise DataError(f"{path}: line {number} does not have two fields")
        if row[0] in result:
            raise DataError(f"{path}: line {number}: duplicate Id {row[0]}")
        result[row[0]] = row[1]
    return result


def choose_test_keys(keys_by_speaker: Mapping[str, list[str]], per_speaker: int, seed: int) -> set[str]:
    """Pick ``per_speaker`` held-out keys per speaker, seeded; a speaker keeps at least one training key."""
    rng = random.Random(seed)
    chosen: set[str] = set()
    for speaker in sorted(keys_by_speaker):
        keys = sorted(keys_by_speaker[speaker])
        take = min(per_speaker, max(len(keys) - 1, 0))
        chosen.update(rng.sample(keys, take))
    return chosen


class DatasetWriter:
    """Write an HW4 data set into a temporary folder, then rename it into place.

    A crash (or an exception inside the ``with`` block) removes the temporary folder, so ``out`` either
    does not exist or holds a complete data set. ``out`` must not exist, or be an empty folder.
    """

    def __init__(self, out: Path, n_mels: int, info: Mapping[str, Any]) -> None:
        self.out = Path(out).resolve()
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
            raise DataError(f"{self.out}: already exists and is not empty; choose a new output folder")
        self.n_mels = n_mels
        self.info = dict(info)
        self._train: dict[str, list[dict[str, Any]]] = {}
        self._test: list[tuple[dict[str, Any], str]] = []
        self._tmp: Path | None = None

    def __enter__(self) -> DatasetWriter:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.", dir=self.out.parent))
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._tmp is not None and self._tmp.exists():
            shutil.rmtree(self._tmp, ignore_errors=True)

    def add(self, speaker: str, key: str, features: np.ndarray, test: bool = False) -> str:
        """Save ``features (T, n_mels)`` as ``uttr-<md5(speaker/key)>.pt``; return the file name."""
        import torch

        assert self._tmp is not None, "use DatasetWriter as a context manager"
        if features.ndim != 2 or features.shape[1] != self.n_mels or features.shape[0] == 0:
            raise DataError(f"{key}: features of shape {features.shape} do not fit (T>0, {self.n_mels})")
        name = f"uttr-{hashlib.md5(f'{speaker}/{key}'.encode()).hexdigest()}.pt"
        torch.save(torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)), self._tmp / name)
        entry = {"feature_path": name, "mel_len": int(features.shape[0])}
        if test:
            self._test.append((entry, speaker))
        else:
            self._train.setdefault(speaker, []).append(entry)
        return name

    def commit(self) -> Path:
        """Write the JSON files and ``answers.csv``, then move the folder into place."""
        assert self._tmp is not None, "use DatasetWriter as a context manager"
        speakers = sorted(self._train)
        if not speakers:
            raise DataError(f"{self.out}: no usable training utterances; nothing written")
        unknown = sorted({s for _, s in self._test} - set(speakers))
        if unknown:
            raise DataError(f"{self.out}: test speakers without training data: {', '.join(unknown)}")
        meta = {"n_mels": self.n_mels, "speakers": {s: self._train[s] for s in speakers}, "automel": self.info}
        mapping = {"speaker2id": {s: i for i, s in enumerate(speakers)},
                   "id2speaker": {str(i): s for i, s in enumerate(speakers)}}
        test = [entry for entry, _ in self._test]
        _write_json(self._tmp / METADATA, meta)
        _write_json(self._tmp / MAPPING, mapping)
        _write_json(self._tmp / TESTDATA, {"n_mels": self.n_mels, "utterances": test})
        with (self._tmp / ANSWERS).open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["Id", "Category"])
            writer.writerows([entry["feature_path"], speaker] for entry, speaker in self._test)
        if self.out.exists():
            self.out.rmdir()  # empty, checked in __init__
        self._tmp.rename(self.out)
        self._tmp = None
        return self.out


def _write_json(path: Path, obj: Any) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=2)


def answers_path(root: Path) -> Path:
    return Path(root) / ANSWERS

