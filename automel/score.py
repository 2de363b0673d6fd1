"""Scoring a submission against an answer key (both ``Id,Category`` CSVs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from automel.data.layout import read_answers
from automel.errors import DataError


@dataclass(frozen=True)
class Score:
    correct: int
    total: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0


def score_submission(submission: Path, answers: Path) -> Score:
    """Accuracy of ``submission``; every Id of the key must be answered exactly once, and nothing else."""
    predicted = read_answers(submission)
    truth = read_answers(answers)
    missing = sorted(set(truth) - set(predicted))
    if missing:
        raise DataError(f"{submission}: {len(missing)} Id(s) of the answer key are missing, e.g. {missing[0]}")
    extra = sorted(set(predicted) - set(truth))
    if extra:
        raise DataError(f"{submission}: {len(extra)} Id(s) are not in the answer key, e.g. {extra[0]}")
    return Score(sum(predicted[k] == v for k, v in truth.items()), len(truth))
