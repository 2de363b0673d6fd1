"""The feature store: one contiguous array built from the .pt files, cached on disk and memory-mapped.

Anything that changes or damages a data set works on a copy of ../shared/data/hw4-sample in tmp_path.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from automel.data import store as store_module
from automel.data.store import FeatureStore, fingerprint_dataset, open_store
from automel.errors import DataError
from tests.conftest import HW4_SAMPLE, need


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def sample_copy(hw4_sample: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "hw4"
    shutil.copytree(hw4_sample, dst)
    return dst


@pytest.fixture
def build_calls() -> list[Path]:
    """The cache folders that :func:`open_counted` saw built, in order."""
    return []


def open_counted(root: Path, home: Path, builds: list[Path]) -> FeatureStore:
    """``open_store``, recording in ``builds`` the cache folder of a build: its progress callback hears only
    builds (a reused cache calls it never)."""
    heard: list[int] = []
    store = open_store(root, home, on_progress=lambda done, total: heard.append(done))
    if heard:
        builds.append(home / "cache" / store.fingerprint)
    return store


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_pt(path: Path) -> torch.Tensor:
    tensor = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(tensor, torch.Tensor)
    return tensor


def rows(store: FeatureStore, i: int) -> torch.Tensor:
    start, length = int(store.offsets[i]), int(store.lengths[i])
    return store.features[start : start + length]


def mapped_file(address: int) -> str | None:
    """The file mapped at ``address`` in this process (Linux), ``""`` for anonymous memory."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if low <= address < high:
            return fields[5] if len(fields) > 5 else ""
    return None


# --- layout and contents ------------------------------------------------------------------------------


def test_store_matches_the_feature_files(hw4_sample: Path, home: Path) -> None:
    store = open_store(hw4_sample, home)
    meta = load_json(hw4_sample / "metadata.json")
    mapping = load_json(hw4_sample / "mapping.json")
    testdata = load_json(hw4_sample / "testdata.json")
    train = [(u["feature_path"], u["mel_len"], mapping["speaker2id"][speaker])
             for speaker, utts in meta["speakers"].items() for u in utts]
    test = [(u["feature_path"], u["mel_len"], -1) for u in testdata["utterances"]]
    expected = train + test
    assert len(train) == 203 and len(test) == 48

    total = sum(mel_len for _, mel_len, _ in expected)
    assert store.features.dtype == torch.float32
    assert tuple(store.features.shape) == (total, 40)
    assert store.n_mels == 40 and store.num_classes == 10
    assert store.device == torch.device("cpu")
    assert store.paths == tuple(name for name, _, _ in expected)  # train, then test in testdata.json order
    for tensor in (store.offsets, store.lengths, store.labels):
        assert tensor.dtype == torch.int64 and tuple(tensor.shape) == (len(expected),)
    assert store.lengths.tolist() == [mel_len for _, mel_len, _ in expected]
    assert store.labels.tolist() == [label for _, _, label in expected]
    assert store.offsets[0] == 0
    assert torch.equal(store.offsets[1:], torch.cumsum(store.lengths, 0)[:-1])
    assert np.array_equal(store.train_indices(), np.arange(203))
    assert np.array_equal(store.test_indices(), np.arange(203, 251))

    for i in [0, 1, 57, 202, 203, 230, 250]:
        assert torch.equal(rows(store, i), load_pt(hw4_sample / store.paths[i])), store.paths[i]


def test_second_open_maps_the_cache_without_rebuilding(hw4_sample: Path, home: Path) -> None:
    builds: list[Path] = []
    first = open_counted(hw4_sample, home, builds)
    second = open_counted(hw4_sample, home, builds)
    assert len(builds) == 1
    assert builds[0] == home / "cache" / first.fingerprint
    assert second.fingerprint == first.fingerprint
    assert sorted(p.name for p in builds[0].iterdir()) == ["features.bin", "index.npz", "manifest.json"]
    assert [p.name for p in (home / "cache").iterdir()] == [first.fingerprint]  # no temporary folder left
    assert torch.equal(second.features, first.features)
    assert torch.equal(second.offsets, first.offsets) and torch.equal(second.labels, first.labels)
    if sys.platform.startswith("linux"):
        # the features are the cache file itself, mapped into memory, not a copy read into RAM
        assert mapped_file(second.features.data_ptr()) == str(builds[0] / "features.bin")
    assert (builds[0] / "features.bin").stat().st_size == second.features.numel() * 4


# --- when the cache must be rebuilt -------------------------------------------------------------------


def test_touching_a_feature_file_changes_the_fingerprint(sample_copy: Path) -> None:
    before = fingerprint_dataset(sample_copy)
    assert fingerprint_dataset(sample_copy) == before
    name = load_json(sample_copy / "testdata.json")["utterances"][0]["feature_path"]
    st = os.stat(sample_copy / name)
    os.utime(sample_copy / name, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert fingerprint_dataset(sample_copy) != before
    assert fingerprint_dataset(sample_copy, "float16") != fingerprint_dataset(sample_copy, "float32")


def test_changed_feature_file_rebuilds(sample_copy: Path, home: Path, build_calls: list[Path]) -> None:
    old = open_counted(sample_copy, home, build_calls)
    i = 17
    name = old.paths[i]
    original = rows(old, i).clone()
    replacement = original.flip(0).contiguous() + 1.0
    torch.save(replacement, sample_copy / name)
    new = open_counted(sample_copy, home, build_calls)
    assert new.fingerprint != old.fingerprint
    assert build_calls == [home / "cache" / old.fingerprint, home / "cache" / new.fingerprint]
    assert torch.equal(rows(new, i), replacement)
    assert torch.equal(rows(old, i), original)  # the old cache is a different file, untouched
    assert torch.equal(rows(new, i + 1), rows(old, i + 1))


def _truncate(path: Path, size: int) -> None:
    with path.open("r+b") as fh:
        fh.truncate(size)


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def _sampled_middle(path: Path) -> int:
    """An offset inside the middle block the cache's sampled checksum reads."""
    size = path.stat().st_size
    k = store_module._SAMPLE_BLOCKS // 2
    return (size - store_module._BLOCK) * k // (store_module._SAMPLE_BLOCKS - 1) + 1000


CACHE_DAMAGE: dict[str, Callable[[Path], object]] = {
    "features truncated": lambda c: _truncate(c / "features.bin", (c / "features.bin").stat().st_size // 2),
    "features one frame short": lambda c: _truncate(c / "features.bin", (c / "features.bin").stat().st_size - 160),
    "features bytes at the start": lambda c: _overwrite(c / "features.bin", 0, b"\xff" * 64),
    "features bytes in the middle": lambda c: _overwrite(c / "features.bin", _sampled_middle(c / "features.bin"),
                                                         b"\x00\x00\x80\x7f" * 16),
    "features deleted": lambda c: (c / "features.bin").unlink(),
    "index truncated": lambda c: _truncate(c / "index.npz", (c / "index.npz").stat().st_size // 2),
    "index empty": lambda c: _truncate(c / "index.npz", 0),
    "manifest not JSON": lambda c: (c / "manifest.json").write_text("{\"version\": 1,"),
    "manifest not an object": lambda c: (c / "manifest.json").write_text("[1, 2, 3]"),
    "manifest deleted": lambda c: (c / "manifest.json").unlink(),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    """hw4-sample's cache, built once for this module: (its home, a copy of the store's tensors)."""
    root = need(HW4_SAMPLE)
    home = tmp_path_factory.mktemp("built-home")
    store = open_store(root, home)
    reference = {k: getattr(store, k).clone() for k in ("features", "offsets", "lengths", "labels")}
    del store  # unmap the cache file
    gc.collect()
    return home, reference


@pytest.mark.parametrize("damage", list(CACHE_DAMAGE))
def test_damaged_cache_is_rebuilt(
    hw4_sample: Path,
    home: Path,
    build_calls: list[Path],
    damage: str,
    built: tuple[Path, dict[str, torch.Tensor]],
) -> None:
    built_home, reference = built
    shutil.copytree(built_home / "cache", home / "cache")  # a private copy: damage it without unmapping anything
    (cache,) = (home / "cache").iterdir()
    assert open_counted(hw4_sample, home, build_calls).fingerprint == cache.name and build_calls == []  # good copy
    gc.collect()
    CACHE_DAMAGE[damage](cache)
    rebuilt = open_counted(hw4_sample, home, build_calls)
    assert build_calls == [cache], "the damaged cache was trusted"
    for key, value in reference.items():
        assert torch.equal(getattr(rebuilt, key), value), key
    assert open_counted(hw4_sample, home, build_calls).fingerprint == rebuilt.fingerprint
    assert build_calls == [cache]  # and the rebuilt cache is trusted again


# --- options and failures -----------------------------------------------------------------------------


def test_float16_store(hw4_sample: Path, home: Path) -> None:
    full = open_store(hw4_sample, home)
    half = open_store(hw4_sample, home, dtype="float16")
    assert half.features.dtype == torch.float16
    assert half.fingerprint != full.fingerprint
    assert (home / "cache" / half.fingerprint / "features.bin").stat().st_size == half.features.numel() * 2
    assert half.features.shape == full.features.shape
    assert torch.equal(half.offsets, full.offsets) and torch.equal(half.labels, full.labels)
    error = (half.features.float() - full.features).abs()
    worst = float((error / (full.features.abs() + 1e-1)).max())
    assert bool((error <= 1e-2 * full.features.abs() + 1e-3).all()), f"float16 is off by up to {worst:.3g}"
    assert open_store(hw4_sample, home, dtype="float16").fingerprint == half.fingerprint


def test_broken_feature_file_raises_naming_it(sample_copy: Path, home: Path) -> None:
    name = load_json(sample_copy / "metadata.json")["speakers"]["id10003"][2]["feature_path"]
    data = (sample_copy / name).read_bytes()
    (sample_copy / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=re.escape(str(sample_copy / name))):
        open_store(sample_copy, home)
    assert list((home / "cache").iterdir()) == []  # the half-built cache was removed


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_pickle_payload_is_never_run(sample_copy: Path, home: Path, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    name = load_json(sample_copy / "testdata.json")["utterances"][5]["feature_path"]
    torch.save(Evil(marker), sample_copy / name)
    with pytest.raises(DataError, match=re.escape(str(sample_copy / name)) + ".*refused"):
        open_store(sample_copy, home)
    assert not marker.exists()


def test_speaker_missing_from_mapping_raises(sample_copy: Path, home: Path) -> None:
    meta = load_json(sample_copy / "metadata.json")
    meta["speakers"]["stranger"] = meta["speakers"]["id10005"][:3]
    meta["speakers"]["id10005"] = meta["speakers"]["id10005"][3:]
    (sample_copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="stranger"):
        open_store(sample_copy, home)


def test_mel_len_disagreeing_with_the_tensor_stops_the_build(sample_copy: Path, home: Path) -> None:
    """The per-file checks of ``data check`` run when the cache is built, not only in ``data check``."""
    meta = load_json(sample_copy / "metadata.json")
    entry = meta["speakers"]["id10004"][0]
    entry["mel_len"] += 3
    (sample_copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=re.escape(str(sample_copy / entry["feature_path"])) + ".*mel_len"):
        open_store(sample_copy, home)
    assert list((home / "cache").iterdir()) == []


def test_symlink_outside_the_data_set_is_refused_unread(sample_copy: Path, home: Path, tmp_path: Path) -> None:
    name = load_json(sample_copy / "metadata.json")["speakers"]["id10001"][0]["feature_path"]
    (sample_copy / name).replace(tmp_path / "elsewhere.pt")
    (sample_copy / name).symlink_to(tmp_path / "elsewhere.pt")
    with pytest.raises(DataError, match=re.escape(str(sample_copy / name)) + ": refused: a symbolic link"):
        open_store(sample_copy, home)


def test_empty_speaker_is_refused_on_every_open(sample_copy: Path, home: Path) -> None:
    meta = load_json(sample_copy / "metadata.json")
    meta["speakers"]["id10006"] = []
    (sample_copy / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=re.escape(str(sample_copy / "metadata.json")) + ".*'id10006' is empty"):
        open_store(sample_copy, home)
    assert not (home / "cache").exists()  # refused before any cache work


def test_without_testdata_json_the_store_has_no_test_utterances(sample_copy: Path, hw4_sample: Path,
                                                                 home: Path) -> None:
    for entry in load_json(sample_copy / "testdata.json")["utterances"]:
        (sample_copy / entry["feature_path"]).unlink()
    (sample_copy / "testdata.json").unlink()
    store = open_store(sample_copy, home)
    assert store.dataset.test == () and store.test_indices().size == 0
    assert len(store.train_indices()) == 203
    full = open_store(hw4_sample, home)
    assert torch.equal(store.features, full.features[: store.features.shape[0]])  # train rows come first
    assert store.content_id != full.content_id


def test_to_meta_moves_every_tensor(hw4_sample: Path, home: Path) -> None:
    store = open_store(hw4_sample, home)
    moved = store.to("meta")
    assert moved.device == torch.device("meta")
    for key in ("features", "offsets", "lengths", "labels"):
        before, after = getattr(store, key), getattr(moved, key)
        assert after.device.type == "meta", key
        assert after.shape == before.shape and after.dtype == before.dtype, key
        assert before.device.type == "cpu", key  # the original store stays where it was
    assert moved.paths == store.paths and moved.fingerprint == store.fingerprint
    assert moved.dataset is store.dataset
    assert moved.n_mels == 40 and moved.num_classes == 10


def test_content_id_names_the_data_wherever_it_lies(sample_copy: Path, hw4_sample: Path, isolated_home: Path) -> None:
    original, copy = open_store(hw4_sample, isolated_home), open_store(sample_copy, isolated_home)
    assert copy.fingerprint != original.fingerprint  # another place, other file times: another cache
    assert copy.content_id == original.content_id  # the same data: workers on other machines may use it
    first = sorted(sample_copy.glob("uttr-*.pt"))[0]
    torch.save(torch.load(first, weights_only=True) + 0.5, first)
    assert open_store(sample_copy, isolated_home).content_id != original.content_id
