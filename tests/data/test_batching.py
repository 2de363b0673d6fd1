"""Batches from the feature store: random training crops and full-length evaluation batches.

A tiny HW4 data set is written with DatasetWriter, with utterances shorter than, equal to and longer
than the segment, and every batch is checked against the feature files reloaded from disk.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from automel.data.batching import PAD_VALUE, Batch, RandomCrops, full_length_batches
from automel.data.layout import DatasetWriter
from automel.data.store import FeatureStore, open_store

N_MELS = 40
SEG = 16
TRAIN_LENGTHS = {"a": [5, 16, 40, 9], "b": [17, 3, 64, 16], "c": [1, 30, 15, 100]}
TEST_LENGTHS = [("a", 7), ("b", 300), ("c", 20)]
N_TRAIN = sum(len(v) for v in TRAIN_LENGTHS.values())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny data set (its root) and a home holding its caches."""
    base = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    with DatasetWriter(base / "data", N_MELS, {"kind": "test"}) as writer:
        for speaker, lengths in TRAIN_LENGTHS.items():
            for k, length in enumerate(lengths):
                writer.add(speaker, f"train-{k}", rng.normal(size=(length, N_MELS)).astype(np.float32))
        for k, (speaker, length) in enumerate(TEST_LENGTHS):
            writer.add(speaker, f"test-{k}", rng.normal(size=(length, N_MELS)).astype(np.float32), test=True)
        root = writer.commit()
    return root, base / "home"


@pytest.fixture(scope="module")
def store(tiny: tuple[Path, Path]) -> FeatureStore:
    root, home = tiny
    return open_store(root, home)


@pytest.fixture(scope="module")
def originals(tiny: tuple[Path, Path], store: FeatureStore) -> list[torch.Tensor]:
    """Each store row's feature file, reloaded from disk."""
    root, _ = tiny
    return [torch.load(root / name, weights_only=True) for name in store.paths]


def test_the_tiny_store(store: FeatureStore, originals: list[torch.Tensor]) -> None:
    expected = [n for lengths in TRAIN_LENGTHS.values() for n in lengths] + [n for _, n in TEST_LENGTHS]
    assert store.lengths.tolist() == expected
    assert store.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4 + [-1] * 3
    assert [len(t) for t in originals] == expected


def check_rows(batch: Batch, store: FeatureStore, originals: list[torch.Tensor], width: int) -> list[int]:
    """Check a batch row by row against the files; return each row's crop start."""
    size = len(batch.index)
    assert batch.x.shape == (size, width, N_MELS) and batch.x.dtype == torch.float32
    assert batch.mask.shape == (size, width) and batch.mask.dtype == torch.bool
    assert batch.labels.shape == (size,) and batch.index.shape == (size,)
    starts = []
    for b, i in enumerate(batch.index.tolist()):
        original = originals[i]
        real = min(len(original), width)
        assert torch.equal(batch.mask[b], torch.arange(width) < real), (i, batch.mask[b])
        assert bool((batch.x[b, real:] == PAD_VALUE).all()), i
        assert int(batch.labels[b]) == int(store.labels[i])
        crop = batch.x[b, :real]
        matches = [s for s in range(len(original) - real + 1) if torch.equal(original[s : s + real], crop)]
        assert len(matches) == 1, f"row {b} (utterance {i}) is not a slice of its file"
        starts.append(matches[0])
    return starts


# --- RandomCrops --------------------------------------------------------------------------------------


def test_random_crops_are_slices_of_the_files(store: FeatureStore, originals: list[torch.Tensor]) -> None:
    crops = RandomCrops(store, store.train_indices(), batch_size=4, segment_len=SEG, seed=0)
    starts: dict[int, set[int]] = {}
    for _ in range(30):
        batch = next(crops)
        for i, start in zip(batch.index.tolist(), check_rows(batch, store, originals, SEG), strict=True):
            starts.setdefault(i, set()).add(start)
            if len(originals[i]) <= SEG:
                assert start == 0
            assert start + SEG <= max(len(originals[i]), SEG)
    assert set(starts) == set(range(N_TRAIN))
    assert len(starts[11]) > 1  # the 100-frame utterance is cropped at different places
    short = [i for i in range(N_TRAIN) if len(originals[i]) < SEG]
    assert short  # the data set really has utterances shorter than the segment, all padded


@pytest.mark.parametrize("batch_size", [1, 4, 5, 12, 13, 32])
def test_every_utterance_once_per_epoch(store: FeatureStore, batch_size: int) -> None:
    train = store.train_indices()
    crops = RandomCrops(store, train, batch_size=batch_size, segment_len=SEG, seed=batch_size)
    epochs = 6
    batches = -(-epochs * N_TRAIN // batch_size)
    seen = torch.cat([next(crops).index for _ in range(batches)]).tolist()
    assert len(seen) == batches * batch_size
    for epoch in range(epochs):
        block = seen[epoch * N_TRAIN : (epoch + 1) * N_TRAIN]
        assert sorted(block) == train.tolist(), f"epoch {epoch}: {Counter(block)}"


def test_random_crops_use_only_the_given_indices(store: FeatureStore) -> None:
    crops = RandomCrops(store, np.array([2, 9, 13]), batch_size=2, segment_len=SEG, seed=0)
    seen = torch.cat([next(crops).index for _ in range(9)]).tolist()
    assert Counter(seen) == {2: 6, 9: 6, 13: 6}


def test_random_crops_are_deterministic_per_seed(store: FeatureStore) -> None:
    def take(seed: int) -> list[Batch]:
        crops = RandomCrops(store, store.train_indices(), batch_size=5, segment_len=SEG, seed=seed)
        return [next(crops) for _ in range(6)]

    first, again, other = take(1), take(1), take(2)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.index, b.index) and torch.equal(a.x, b.x) and torch.equal(a.mask, b.mask)
    assert any(not torch.equal(a.index, c.index) or not torch.equal(a.x, c.x)
               for a, c in zip(first, other, strict=True))


def test_random_crops_need_indices(store: FeatureStore) -> None:
    with pytest.raises(ValueError, match="no training utterances"):
        RandomCrops(store, np.array([], dtype=np.int64), batch_size=4, segment_len=SEG)


def test_float16_store_gives_float32_batches(tiny: tuple[Path, Path], originals: list[torch.Tensor]) -> None:
    root, home = tiny
    half = open_store(root, home, dtype="float16")
    batch = next(RandomCrops(half, half.train_indices(), batch_size=N_TRAIN, segment_len=SEG, seed=0))
    assert batch.x.dtype == torch.float32
    for b, i in enumerate(batch.index.tolist()):
        real = min(len(originals[i]), SEG)
        assert bool((batch.x[b, real:] == PAD_VALUE).all())
        row = batch.x[b, :real]
        assert any(torch.allclose(originals[i][s : s + real], row, rtol=1e-2, atol=1e-2)
                   for s in range(len(originals[i]) - real + 1))


# --- full_length_batches ------------------------------------------------------------------------------


def collect(store: FeatureStore, indices: np.ndarray, **kwargs: int) -> list[Batch]:
    return list(full_length_batches(store, indices, **kwargs))


@pytest.mark.parametrize(("max_frames", "max_batch"), [(64, 3), (64, 64), (10_000, 4), (1, 64), (32_768, 64)])
def test_full_length_batches(store: FeatureStore, originals: list[torch.Tensor], max_frames: int,
                             max_batch: int) -> None:
    everything = np.arange(len(store.paths))
    batches = collect(store, everything, max_frames=max_frames, max_batch=max_batch)
    seen = torch.cat([b.index for b in batches]).tolist()
    assert sorted(seen) == everything.tolist()  # every utterance exactly once, the last batch kept
    widths = []
    for batch in batches:
        size, width = batch.x.shape[:2]
        lengths = [len(originals[i]) for i in batch.index.tolist()]
        assert width == max(lengths)
        assert 1 <= size <= max_batch
        assert size * width <= max_frames or size == 1, (size, width)
        assert check_rows(batch, store, originals, width) == [0] * size  # whole utterances, from frame 0
        widths.append(width)
    assert widths == sorted(widths)  # length-sorted, so padding stays small
    assert any(len(b.index) == 1 and b.x.shape[1] > max_frames for b in batches) == (max_frames < 300)


def test_full_length_batches_keep_the_last_partial_batch(store: FeatureStore) -> None:
    batches = collect(store, np.arange(15), max_frames=100_000, max_batch=4)
    assert [len(b.index) for b in batches] == [4, 4, 4, 3]


def test_full_length_batches_are_deterministic(store: FeatureStore) -> None:
    indices = np.array([14, 3, 7, 0, 11, 12, 5])
    first = collect(store, indices, max_frames=64, max_batch=2)
    again = collect(store, indices.copy(), max_frames=64, max_batch=2)
    assert len(first) == len(again)
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.index, b.index) and torch.equal(a.x, b.x) and torch.equal(a.mask, b.mask)
    assert sorted(torch.cat([b.index for b in first]).tolist()) == sorted(indices.tolist())


def test_full_length_batches_of_the_test_set(store: FeatureStore, originals: list[torch.Tensor]) -> None:
    batches = collect(store, store.test_indices(), max_frames=64)
    assert sorted(torch.cat([b.index for b in batches]).tolist()) == [12, 13, 14]
    for batch in batches:
        assert (batch.labels == -1).all()
        check_rows(batch, store, originals, batch.x.shape[1])


def test_batches_know_on_the_host_whether_they_are_padded(store: FeatureStore) -> None:
    crops = RandomCrops(store, store.train_indices(), batch_size=4, segment_len=SEG, seed=0)
    for _ in range(20):
        batch = next(crops)
        assert batch.padded == (not bool(batch.mask.all()))
    for batch in full_length_batches(store, store.train_indices(), max_frames=10_000, max_batch=3):
        assert batch.padded == (not bool(batch.mask.all()))


def test_cutting_batches_on_a_device_never_reads_from_it(store: FeatureStore) -> None:
    """A store on the ``meta`` device stands for a GPU: reading any of its values would raise.

    So cutting training crops and evaluation batches makes no device-to-host transfer (no sync).
    """
    device_store = store.on("meta")
    assert store.on("meta") is device_store  # copied once per store and device
    assert device_store.host is store and store.on("cpu") is store
    crops = RandomCrops(device_store, store.train_indices(), batch_size=4, segment_len=SEG, seed=0)
    kinds = {next(crops).padded for _ in range(20)}
    assert kinds == {True, False}  # both kinds were cut, both without a read
    batches = list(full_length_batches(device_store, store.train_indices(), max_frames=10_000, max_batch=3))
    assert all(b.x.device.type == "meta" and b.mask.device.type == "meta" for b in batches)
    assert sum(len(b.labels) for b in batches) == N_TRAIN
