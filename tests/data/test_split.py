"""The seeded, per-speaker train/validation split and its JSON record."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from automel.data.layout import read_dataset
from automel.data.split import Split, stratified_split
from automel.errors import ConfigError, DataError


def sample_labels(root: Path) -> np.ndarray:
    """The labels in store order (train by speaker id, then -1 per test utterance), without a cache."""
    dataset = read_dataset(root)
    train = [dataset.speaker_id(u.speaker or "") for u in dataset.train]
    return np.array(train + [-1] * len(dataset.test), dtype=np.int64)


def synthetic_labels() -> np.ndarray:
    """Speakers of 1..30 utterances (speaker 3 has exactly one), shuffled, with test rows (-1) in between."""
    counts = {0: 30, 1: 12, 2: 2, 3: 1, 4: 7, 5: 3, 6: 20, 7: 5}
    labels = np.concatenate([np.full(n, s) for s, n in counts.items()] + [np.full(9, -1)])
    return np.random.default_rng(123).permutation(labels).astype(np.int64)


def expected_valid_count(n: int, fraction: float) -> int:
    return 0 if n < 2 else int(np.clip(round(n * fraction), 1, n - 1))


def assert_well_formed(split: Split, labels: np.ndarray, fraction: float) -> None:
    labelled = np.flatnonzero(labels >= 0)
    for part in (split.train, split.valid):
        assert part.dtype == np.int64
        assert np.array_equal(part, np.unique(part))  # sorted, no repeats
    assert np.intersect1d(split.train, split.valid).size == 0
    assert np.array_equal(np.union1d(split.train, split.valid), labelled)
    for speaker in np.unique(labels[labelled]):
        n = int((labels == speaker).sum())
        n_valid = int((labels[split.valid] == speaker).sum())
        n_train = int((labels[split.train] == speaker).sum())
        assert n_valid == expected_valid_count(n, fraction), (speaker, n, n_valid)
        assert n_train + n_valid == n
        if n >= 2:
            assert n_valid >= 1 and n_train >= 1, speaker
        else:
            assert n_train == 1 and n_valid == 0, speaker
    assert split.valid_fraction == fraction


@pytest.fixture
def hw4_labels(hw4_sample: Path) -> np.ndarray:
    labels = sample_labels(hw4_sample)
    assert len(labels) == 251 and (labels >= 0).sum() == 203
    return labels


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.9])
def test_hw4_sample_split(hw4_labels: np.ndarray, fraction: float) -> None:
    split = stratified_split(hw4_labels, fraction, seed=0)
    assert_well_formed(split, hw4_labels, fraction)
    assert set(hw4_labels[split.valid].tolist()) == set(range(10))  # every speaker is validated
    assert split.seed == 0


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.3, 0.5, 0.99])
def test_synthetic_split(fraction: float) -> None:
    labels = synthetic_labels()
    for seed in range(5):
        split = stratified_split(labels, fraction, seed=seed)
        assert_well_formed(split, labels, fraction)
        assert 3 not in labels[split.valid]  # the one-utterance speaker stays in training
        assert 3 in labels[split.train]


@pytest.mark.parametrize("source", ["synthetic", "hw4-sample"])
def test_deterministic_per_seed_and_different_across_seeds(
    source: str, request: pytest.FixtureRequest
) -> None:
    labels = synthetic_labels() if source == "synthetic" else request.getfixturevalue("hw4_labels")
    first = stratified_split(labels, 0.2, seed=7)
    again = stratified_split(labels.copy(), 0.2, seed=7)
    assert np.array_equal(first.valid, again.valid) and np.array_equal(first.train, again.train)
    others = [stratified_split(labels, 0.2, seed=s).valid for s in range(8, 12)]
    assert all(not np.array_equal(first.valid, other) for other in others)


def test_tiny_set_ten_speakers_two_utterances() -> None:
    labels = np.repeat(np.arange(10), 2)
    split = stratified_split(labels, 0.1, seed=3)
    assert_well_formed(split, labels, 0.1)
    assert len(split.valid) == 10 and len(split.train) == 10
    assert sorted(labels[split.valid].tolist()) == list(range(10))
    assert sorted(labels[split.train].tolist()) == list(range(10))


def test_only_single_utterance_speakers_give_an_empty_validation_set() -> None:
    labels = np.array([0, 1, 2, -1], dtype=np.int64)
    split = stratified_split(labels, 0.5, seed=0)
    assert split.train.tolist() == [0, 1, 2]
    assert split.valid.size == 0 and split.valid.dtype == np.int64


def test_no_labelled_rows_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no labelled"):
        stratified_split(np.full(5, -1, dtype=np.int64), 0.1, seed=0)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_invalid_fraction_is_a_config_error(fraction: float) -> None:
    with pytest.raises(ConfigError, match="fraction"):
        stratified_split(np.repeat(np.arange(3), 4), fraction, seed=0)


# --- the JSON record ----------------------------------------------------------------------------------


def fake_paths(n: int) -> tuple[str, ...]:
    return tuple(f"uttr-{i:032x}.pt" for i in range(n))


def test_json_round_trip() -> None:
    labels = synthetic_labels()
    paths = fake_paths(len(labels))
    split = stratified_split(labels, 0.3, seed=11)
    record = json.loads(json.dumps(split.to_json(paths)))  # survives real JSON
    assert record["seed"] == 11 and record["valid_fraction"] == 0.3
    assert record["valid"] == sorted(paths[i] for i in split.valid)
    back = Split.from_json(record, paths, labels)
    assert np.array_equal(back.train, split.train) and np.array_equal(back.valid, split.valid)
    assert (back.seed, back.valid_fraction) == (split.seed, split.valid_fraction)


def test_json_round_trip_survives_reordering() -> None:
    labels = synthetic_labels()
    paths = fake_paths(len(labels))
    split = stratified_split(labels, 0.3, seed=11)
    record = split.to_json(paths)
    order = np.random.default_rng(0).permutation(len(labels))
    shuffled_paths = tuple(paths[i] for i in order)
    back = Split.from_json(record, shuffled_paths, labels[order])
    assert sorted(shuffled_paths[i] for i in back.valid) == sorted(paths[i] for i in split.valid)
    assert sorted(shuffled_paths[i] for i in back.train) == sorted(paths[i] for i in split.train)


def test_from_json_with_an_unknown_path_is_a_data_error() -> None:
    labels = np.repeat(np.arange(4), 3)
    paths = fake_paths(len(labels))
    record = stratified_split(labels, 0.3, seed=0).to_json(paths)
    record["valid"].append("uttr-gone.pt")
    with pytest.raises(DataError, match=re.escape("uttr-gone.pt")):
        Split.from_json(record, paths, labels)
