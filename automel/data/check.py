"""``automel data check``: every problem of a data set, each naming its file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from automel.data.features import load_utterance
from automel.data.layout import MAPPING, scan_dataset
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
    warnings: list[str] = field(default_factory=list)  # valid, but worth a line: see formula_warning

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
    """Validate the JSON files and every feature file of ``root``; never raises for a data problem.

    The checks are those every command runs, here all reported at once: the structural ones of
    :func:`automel.data.layout.scan_dataset` (which ``read_dataset`` runs on every open) and the per-file ones
    of :func:`automel.data.features.load_utterance` (which the feature cache runs when it is built).
    """
    root = Path(root)
    report = CheckReport(root)
    dataset, report.problems = scan_dataset(root)
    if dataset is None:
        return report
    report.kind = dataset.kind
    report.warnings += formula_warning(root, dataset.speakers)
    report.speakers = len({u.speaker for u in dataset.train} | set(dataset.speakers))
    items = [(u, False) for u in dataset.train] + [(u, True) for u in dataset.test]
    lengths: dict[str, int] = {}
    for done, (utt, is_test) in enumerate(items, start=1):
        if on_progress:
            on_progress(done, len(items))
        try:
            frames = load_utterance(root, utt, dataset.n_mels).shape[0]
        except DataError as exc:
            report.problems.append(str(exc))
            continue
        lengths[utt.feature_path] = frames
        (report.test_lengths if is_test else report.train_lengths).append(frames)
    if lengths:
        report.shortest = min(lengths.items(), key=lambda kv: kv[1])
        report.longest = max(lengths.items(), key=lambda kv: kv[1])
    return report


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # what spreadsheets take for the start of a formula (OWASP)


def formula_warning(root: Path, speakers: tuple[str, ...]) -> list[str]:
    """One warning when speaker names start like a spreadsheet formula (``=1+2``, ``@SUM(...)``).

    Such a name reaches ``output.csv`` as it is: the submission must match the answer key byte for byte, so
    automel never rewrites names (no ``'`` prefix). Whoever opens the CSV in a spreadsheet runs the cell;
    ``data check`` says so, the data set stays valid.
    """
    risky = [s for s in speakers if s.startswith(FORMULA_STARTS)]
    if not risky:
        return []
    shown = ", ".join(repr(s) for s in risky[:3]) + (f" and {len(risky) - 3} more" if len(risky) > 3 else "")
    return [f"{root / MAPPING}: {len(risky)} speaker name(s) start like a spreadsheet formula ({shown}); they "
            "reach output.csv unchanged (Kaggle needs the exact names), so open it as text, not in a spreadsheet"]
