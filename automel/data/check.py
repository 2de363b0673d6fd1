"""``automel data check``: every problem of a data set, each naming its file."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from automel.data.features import load_feature
from automel.data.layout import MAPPING, METADATA, TESTDATA, is_plain_name, read_json
from automel.errors import DataError

FRAMES_PER_SECOND = 100  # 10 ms hop


@dataclass
class CheckReport:
    """What ``check_dataset`` found; ``problems`` is empty for a valid data set."""

    root: Path
    kind: str = "unknown"
    speakers: int = 0
    train_lengths: list[int] = field(default_factory=list)
    test_lengths: list[int] = field(default_factory=list)
    shortest: tuple[str, int] | None = None
    longest: tuple[str, int] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary_rows(self) -> list[tuple[str, str]]:
        lengths = np.array(self.train_lengths + self.test_lengths, dtype=np.int64)
        rows = [
            ("data set", f"{self.root} [{self.kind}]"),
            ("speakers", str(self.speakers)),
            ("train utterances", str(len(self.train_lengths))),
            ("test utterances", str(len(self.test_lengths))),
            ("frames", f"{int(lengths.sum()):,}"),
        ]
        if lengths.size:
            p = np.percentile(lengths / FRAMES_PER_SECOND, [5, 50, 95])
            rows.append(("duration p5/p50/p95", f"{p[0]:.2f} s / {p[1]:.2f} s / {p[2]:.2f} s"))
        if self.shortest and self.longest:
            rows.append(("shortest", f"{self.shortest[0]} ({self.shortest[1]} frames)"))
            rows.append(("longest", f"{self.longest[0]} ({self.longest[1]} frames)"))
        rows.append(("problems", str(len(self.problems))))
        return rows


def check_dataset(root: Path, on_progress: Callable[[int, int], None] | None = None) -> CheckReport:
    """Validate the JSON files and every feature file of ``root``; never raises for a data problem."""
    root = Path(root)
    report = CheckReport(root)
    if not root.is_dir():
        report.problems.append(f"{root}: not a directory")
        return report
    try:
        meta = read_json(root / METADATA)
        mapping = read_json(root / MAPPING)
    except DataError as exc:
        report.problems.append(str(exc))
        return report
    info = meta.get("automel") if isinstance(meta, dict) else None
    report.kind = str(info.get("kind", "hw4")) if isinstance(info, dict) else "hw4"
    n_mels = meta.get("n_mels") if isinstance(meta, dict) else None
    speakers = meta.get("speakers") if isinstance(meta, dict) else None
    if not isinstance(n_mels, int) or not isinstance(speakers, dict):
        report.problems.append(f"{root / METADATA}: needs 'n_mels' (int) and 'speakers' (object)")
        return report
    report.speakers = len(speakers)
    report.problems += _check_mapping(root / MAPPING, mapping, list(speakers))
    items = _train_items(root / METADATA, speakers, report.problems)
    items += _test_items(root / TESTDATA, n_mels, report.problems)
    _check_features(root, n_mels, items, report, on_progress)
    return report


def _check_mapping(path: Path, mapping: Any, speakers: list[str]) -> list[str]:
    if not isinstance(mapping, dict) or not isinstance(mapping.get("id2speaker"), dict):
        return [f"{path}: missing 'id2speaker'"]
    problems = []
    id2speaker = mapping["id2speaker"]
    ids = sorted(int(k) for k in id2speaker if str(k).lstrip("-").isdecimal())
    if len(ids) != len(id2speaker) or ids != list(range(len(ids))):
        problems.append(f"{path}: speaker ids are not 0..{len(id2speaker) - 1}")
    speaker2id = mapping.get("speaker2id")
    if isinstance(speaker2id, dict):
        for name, idx in speaker2id.items():
            if id2speaker.get(str(idx)) != name:
                problems.append(f"{path}: speaker2id[{name!r}] = {idx} disagrees with id2speaker")
    known = set(id2speaker.values())
    problems += [f"{path}: speaker {s!r} of metadata.json is missing from the mapping" for s in speakers
                 if s not in known]
    problems += [f"{path}: speaker {s!r} has no training utterances in metadata.json" for s in sorted(known)
                 if s not in set(speakers)]
    return problems


def _train_items(path: Path, speakers: dict[str, Any], problems: list[str]) -> list[tuple[Any, bool]]:
    items: list[tuple[Any, bool]] = []
    for speaker, utts in speakers.items():
        if not isinstance(utts, list) or not utts:
            problems.append(f"{path}: speaker {speaker!r} is empty")
            continue
        items += [(u, False) for u in utts]
    return items


def _test_items(path: Path, n_mels: int, problems: list[str]) -> list[tuple[Any, bool]]:
    try:
        testdata = read_json(path)
    except DataError as exc:
        problems.append(str(exc))
        return []
    utts = testdata.get("utterances") if isinstance(testdata, dict) else None
    if not isinstance(utts, list) or not utts:
        problems.append(f"{path}: empty test set (no 'utterances')")
        return []
    if testdata.get("n_mels", n_mels) != n_mels:
        problems.append(f"{path}: n_mels {testdata.get('n_mels')} differs from metadata.json's {n_mels}")
    return [(u, True) for u in utts]


def _check_features(root: Path, n_mels: int, items: list[tuple[Any, bool]], report: CheckReport,
                    on_progress: Callable[[int, int], None] | None) -> None:
    names = [u.get("feature_path") if isinstance(u, dict) else None for u, _ in items]
    for dup, count in Counter(n for n in names if isinstance(n, str)).items():
        if count > 1:
            report.problems.append(f"{root / dup}: listed {count} times (duplicate feature path)")
    lengths: dict[str, int] = {}
    for done, ((utt, is_test), name) in enumerate(zip(items, names, strict=True), start=1):
        if on_progress:
            on_progress(done, len(items))
        if not isinstance(name, str) or not isinstance(utt.get("mel_len"), int):
            report.problems.append(f"{root}: an utterance entry lacks 'feature_path' or integer 'mel_len': {utt!r}")
            continue
        if not is_plain_name(name):
            report.problems.append(f"{root}: feature_path {name!r} must be a file name inside the data set")
            continue
        try:
            frames = load_feature(root / name, n_mels).shape[0]
        except DataError as exc:
            report.problems.append(str(exc))
            continue
        if frames != utt["mel_len"]:
            report.problems.append(f"{root / name}: mel_len is {utt['mel_len']} but the tensor has {frames} frames")
        lengths[name] = frames
        (report.test_lengths if is_test else report.train_lengths).append(frames)
    if lengths:
        report.shortest = min(lengths.items(), key=lambda kv: kv[1])
        report.longest = max(lengths.items(), key=lambda kv: kv[1])
