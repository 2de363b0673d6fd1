"""The HW4 data-set layout: read it, and write it atomically.

A data set is a folder with ``metadata.json`` ``{"n_mels", "speakers": {name: [{"feature_path",
"mel_len"}]}}``, ``mapping.json`` ``{"speaker2id", "id2speaker"}`` (id2speaker keys are strings),
``testdata.json`` ``{"n_mels", "utterances": [...]}`` (optional: without it there are no test utterances)
and one ``uttr-<hex>.pt`` per utterance holding a float tensor ``(T, n_mels)``. Unknown keys are ignored,
as HW4 readers do; automel writes its own under ``"automel"`` (the data set's kind and feature parameters).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import shutil
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automel.errors import DataError
from automel.userjson import read_user_json, shorten

METADATA, MAPPING, TESTDATA, ANSWERS = "metadata.json", "mapping.json", "testdata.json", "answers.csv"
# Far beyond any real data set, and small enough that sizes computed from them never overflow: 4,096 mel
# bins (HW4 uses 40), 10**8 frames (11.6 days at a 10 ms hop) per utterance.
MAX_N_MELS, MAX_MEL_LEN = 4096, 10**8


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
    """A data set's JSON file, read within :mod:`automel.userjson`'s limits (depth, integer size, valid
    strings): a hostile file is one :class:`DataError` naming the file and the field, never a traceback."""
    return read_user_json(path, DataError)


def read_dataset(root: Path) -> Hw4Dataset:
    """Read the JSON files of ``root``; raise :class:`DataError` naming the file when the data set is unusable.

    Every command that opens a data set comes here (through :func:`automel.data.store.open_store`), and
    ``data check`` runs the same :func:`scan_dataset`, so a data set ``data check`` rejects is rejected
    everywhere. These are the cheap checks: the JSON structure, the mapping, no empty speaker, no feature
    file listed twice (a test utterance also in training, above all). The per-file checks
    (:func:`automel.data.features.load_utterance`) run when the feature cache is built.
    ``testdata.json`` is optional: without it the data set has no test utterances.
    """
    dataset, problems = scan_dataset(root)
    if problems:
        more = f" (and {len(problems) - 1} more problem(s): `automel data check {root}` lists them)"
        raise DataError(problems[0] + (more if len(problems) > 1 else ""))
    assert dataset is not None
    return dataset


def scan_dataset(root: Path) -> tuple[Hw4Dataset | None, list[str]]:
    """Read the JSON files of ``root`` without stopping at the first problem.

    Returns the data set as far as it could be read (``None`` when ``metadata.json`` or ``mapping.json``
    is unusable; entries that are not utterances are left out) and every structural problem, one line
    each, naming its file. The one structural validation: :func:`read_dataset` and ``data check`` both run it.
    """
    root = Path(root)
    if not root.is_dir():
        return None, [f"{root}: not a directory"]
    try:
        meta = read_json(root / METADATA)
        mapping = read_json(root / MAPPING)
    except DataError as exc:
        return None, [str(exc)]
    n_mels = meta.get("n_mels") if isinstance(meta, dict) else None
    speakers_meta = meta.get("speakers") if isinstance(meta, dict) else None
    if not isinstance(n_mels, int) or isinstance(n_mels, bool) or not 1 <= n_mels <= MAX_N_MELS \
            or not isinstance(speakers_meta, dict):
        return None, [f"{root / METADATA}: needs 'n_mels' (an integer from 1 to {MAX_N_MELS}) and 'speakers' "
                      f"(an object); n_mels is {shorten(repr(n_mels), 40)}"]
    problems: list[str] = []
    speakers = _scan_mapping(root / MAPPING, mapping, list(speakers_meta), problems)
    if not speakers_meta:
        problems.append(f"{root / METADATA}: no speakers: nothing to train on")
    train: list[Utterance] = []
    for speaker, items in speakers_meta.items():
        if not isinstance(items, list):
            problems.append(f"{root / METADATA}: speaker {speaker!r} must be a list of utterances")
        elif not items:
            problems.append(f"{root / METADATA}: speaker {speaker!r} is empty")
        else:
            train += _scan_utterances(items, root / METADATA, speaker, problems)
    test = _scan_testdata(root / TESTDATA, n_mels, problems)
    problems += _listed_twice(root, train, test)
    info = meta.get("automel", {}) if isinstance(meta.get("automel"), dict) else {}
    return Hw4Dataset(root, n_mels, speakers, tuple(train), tuple(test), info), problems


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _scan_mapping(path: Path, mapping: Any, in_metadata: list[str], problems: list[str]) -> tuple[str, ...]:
    """The speakers by id (``metadata.json``'s order when the mapping is unusable); problems go to ``problems``."""
    id2speaker = mapping.get("id2speaker") if isinstance(mapping, dict) else None
    if not isinstance(id2speaker, dict):
        problems.append(f"{path}: missing 'id2speaker'")
        return tuple(in_metadata)
    bad = [k for k, v in id2speaker.items() if not isinstance(v, str) or not _plain_speaker(v)]
    problems += [f"{path}: id2speaker[{shorten(k)!r}] must be a speaker name (a string without control "
                 f"characters), not {shorten(repr(id2speaker[k]))}" for k in bad[:3]]
    by_id = sorted((int(k), v) for k, v in id2speaker.items() if _is_id(k) and k not in bad)
    if [i for i, _ in by_id] != list(range(len(id2speaker))):
        odd = next((k for k in id2speaker if not _is_id(k)), None)
        problems.append(f"{path}: speaker ids are not 0..{len(id2speaker) - 1} (id2speaker keys, written as strings)"
                        + (f"; key {shorten(odd)!r} is not one" if odd is not None else ""))
    names = Counter(s for _, s in by_id)
    problems += [f"{path}: speaker {s!r} has {n} ids in id2speaker" for s, n in names.items() if n > 1]
    speaker2id = mapping.get("speaker2id")
    if isinstance(speaker2id, dict):
        for name, idx in speaker2id.items():
            if id2speaker.get(str(idx)) != name:
                problems.append(f"{path}: speaker2id[{name!r}] = {idx} disagrees with id2speaker")
    known = {s for _, s in by_id}
    problems += [f"{path}: speaker {s!r} of metadata.json is missing from the mapping" for s in in_metadata
                 if s not in known]
    problems += [f"{path}: speaker {s!r} has no training utterances in metadata.json" for s in sorted(known)
                 if s not in set(in_metadata)]
    return tuple(s for _, s in by_id)


def _is_id(key: str) -> bool:
    """``"0"``, ``"17"``: ASCII digits without a sign or leading zeros, as ``str(int)`` writes them (at most
    9 digits: no data set has a billion speakers, and ``int`` of 5,000 digits would raise)."""
    return 0 < len(key) <= 9 and key.isascii() and key.isdecimal() and key == str(int(key))


def _plain_speaker(name: str) -> bool:
    """A speaker name goes into output.csv and one-line messages: no NUL, newline or other control character."""
    return bool(name) and not any(ord(c) < 32 or ord(c) == 127 for c in name)


def _scan_utterances(items: list[Any], source: Path, speaker: str | None, problems: list[str]) -> list[Utterance]:
    utterances = []
    for item in items:
        name = item.get("feature_path") if isinstance(item, dict) else None
        if not isinstance(name, str):
            problems.append(f"{source}: an utterance entry has no 'feature_path': {item!r}"[:300])
        elif not is_plain_name(name):
            problems.append(f"{source}: feature_path {shorten(name)!r} must be a file name inside the data set, "
                            "without control characters")
        elif not _is_int(item.get("mel_len")):
            problems.append(f"{source}: {name} has no integer 'mel_len'")
        elif item["mel_len"] < 1:
            problems.append(f"{source}: {name} has mel_len {item['mel_len']}; it must be at least 1")
        elif item["mel_len"] > MAX_MEL_LEN:
            problems.append(f"{source}: {name} has mel_len {item['mel_len']}; it must be at most {MAX_MEL_LEN:,} "
                            "(11 days of frames)")
        else:
            utterances.append(Utterance(name, item["mel_len"], speaker))
    return utterances


def _scan_testdata(path: Path, n_mels: int, problems: list[str]) -> list[Utterance]:
    """The test utterances: none when ``testdata.json`` is absent or lists none."""
    if not path.exists() and not path.is_symlink():
        return []
    try:
        testdata = read_json(path)
    except DataError as exc:
        problems.append(str(exc))
        return []
    utts = testdata.get("utterances") if isinstance(testdata, dict) else None
    if not isinstance(utts, list):
        problems.append(f"{path}: missing 'utterances' (a list)")
        return []
    if testdata.get("n_mels", n_mels) != n_mels:
        problems.append(f"{path}: n_mels {testdata.get('n_mels')!r} differs from metadata.json's {n_mels}")
    return _scan_utterances(utts, path, None, problems)


def _listed_twice(root: Path, train: list[Utterance], test: list[Utterance]) -> list[str]:
    in_train = Counter(u.feature_path for u in train)
    in_test = Counter(u.feature_path for u in test)
    problems = []
    for name in dict.fromkeys([*in_train, *in_test]):
        if in_train[name] and in_test[name]:
            problems.append(f"{root / name}: is both a training utterance (metadata.json) and a test utterance "
                            "(testdata.json); a test utterance must not be in training")
        elif in_train[name] + in_test[name] > 1:
            problems.append(f"{root / name}: listed {in_train[name] + in_test[name]} times (duplicate feature path)")
    return problems


def is_plain_name(name: str) -> bool:
    """HW4 feature paths are bare file names: no folders, no ``..``, nothing absolute, no NUL or other
    control character (a NUL ends every system call on the path; a newline breaks every message)."""
    return (bool(name) and len(name) <= 255 and "/" not in name and "\\" not in name and name not in (".", "..")
            and not any(ord(c) < 32 or ord(c) == 127 for c in name))


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
        from automel.files import owned_tempdir  # named after this process: a later run clears it if killed

        self._tmp = owned_tempdir(self.out)  # with the umask's mode, as the finished data set should have
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

