"""Scoring a submission against an answer key (both ``Id,Category`` CSVs)."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from automel.errors import DataError
from automel.files import read_user_text

HEADER = ["Id", "Category"]


@dataclass(frozen=True)
class Score:
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def read_submission(path: Path) -> dict[str, str]:
    """``{Id: Category}`` of an ``Id,Category`` CSV (a submission or an answer key); :class:`DataError` naming it.

    Read as ``data prepare --manifest`` reads a manifest: UTF-8 with or without a byte-order mark, cells
    stripped, blank lines (a trailing one, as editors add) skipped.
    """
    path = Path(path)
    text = read_user_text(path, "Id,Category CSV file")
    reader = csv.reader(io.StringIO(text))
    result: dict[str, str] = {}
    header_seen = False
    try:
        for row in reader:
            cells = [cell.strip() for cell in row]
            if not any(cells):
                continue
            if not header_seen:
                if cells != HEADER:
                    raise DataError(f"{path}: header must be 'Id,Category'")
                header_seen = True
                continue
            if len(cells) != 2:
                raise DataError(f"{path}: line {reader.line_num} does not have two fields")
            if cells[0] in result:
                raise DataError(f"{path}: line {reader.line_num}: duplicate Id {cells[0]}")
            result[cells[0]] = cells[1]
    except csv.Error as exc:  # a field over the size limit
        raise DataError(f"{path}: line {reader.line_num} is not CSV ({exc})") from None
    if not header_seen:
        raise DataError(f"{path}: is empty; expected the header 'Id,Category' and one line per Id")
    return result


def score_submission(submission: Path, answers: Path) -> Score:
    """Accuracy of ``submission``; every Id of the key must be answered exactly once, and nothing else."""
    predicted = read_submission(submission)
    truth = read_submission(answers)
    missing = sorted(set(truth) - set(predicted))
    if missing:
        raise DataError(f"{submission}: {len(missing)} Id(s) of the answer key are missing, e.g. {missing[0]}")
    extra = sorted(set(predicted) - set(truth))
    if extra:
        raise DataError(f"{submission}: {len(extra)} Id(s) are not in the answer key, e.g. {extra[0]}")
    return Score(sum(predicted[k] == v for k, v in truth.items()), len(truth))
