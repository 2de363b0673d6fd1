"""The train/validation split: seeded, stratified per speaker, recorded with every run and study.

Unlike the course sample's ``random_split`` it works on tiny data sets: every speaker with at least two
utterances appears in both parts, and a speaker with one utterance stays in training.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from automel.errors import ConfigError, DataError


@dataclass(frozen=True)
class Split:
    """Store indices of the training and validation utterances."""

    train: np.ndarray
    valid: np.ndarray
    seed: int
    valid_fraction: float

    def to_json(self, paths: tuple[str, ...]) -> dict[str, Any]:
        """Record the split by feature path, so it survives re-ordering of the store."""
        return {"seed": self.seed, "valid_fraction": self.valid_fraction,
                "valid": sorted(paths[i] for i in self.valid.tolist())}

    def unvalidated(self, labels: np.ndarray) -> np.ndarray:
        """Speaker ids with labelled utterances but none in validation (a speaker with a single one)."""
        return np.setdiff1d(np.unique(labels[labels >= 0]), np.unique(labels[self.valid]))

    @classmethod
    def from_json(cls, record: dict[str, Any], paths: tuple[str, ...], labels: np.ndarray) -> Split:
        """Rebuild a recorded split against a store; every recorded path must still be there."""
        position = {p: i for i, p in enumerate(paths)}
        missing = [p for p in record["valid"] if p not in position]
        if missing:
            raise DataError(f"recorded validation utterance {missing[0]} is not in the data set")
        valid = np.array(sorted(position[p] for p in record["valid"]), dtype=np.int64)
        train = np.setdiff1d(np.flatnonzero(labels >= 0), valid)
        return cls(train, valid, int(record["seed"]), float(record["valid_fraction"]))


def stratified_split(labels: np.ndarray, valid_fraction: float = 0.1, seed: int = 0) -> Split:
    """Split the labelled utterances (``labels >= 0``) per speaker.

    Each speaker with ``n >= 2`` utterances gives ``clip(round(n * valid_fraction), 1, n - 1)`` to validation.
    """
    if not 0.0 < valid_fraction < 1.0:
        raise ConfigError(f"valid fraction {valid_fraction} must be between 0 and 1")
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    valid: list[np.ndarray] = []
    for speaker in np.unique(labels[labels >= 0]):
        members = rng.permutation(np.flatnonzero(labels == speaker))
        n_valid = 0 if len(members) < 2 else int(np.clip(round(len(members) * valid_fraction), 1, len(members) - 1))
        valid.append(members[:n_valid])
        train.append(members[n_valid:])
    if not train:
        raise DataError("the data set has no labelled utterances to train on")
    return Split(np.sort(np.concatenate(train)), np.sort(np.concatenate(valid)), seed, valid_fraction)
