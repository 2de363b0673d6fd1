"""Reading the HW4 layout: ``read_dataset`` (every command) and ``scan_dataset`` (``data check``) are one check.

Damage is done to a copy of ../shared/data/hw4-sample's JSON files only (no feature file is read here).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from automel.data.layout import read_dataset, scan_dataset
from automel.errors import DataError


@pytest.fixture
def sample_json(hw4_sample: Path, tmp_path: Path) -> Path:
    """The sample's JSON files without its features: enough for the structural checks."""
    dst = tmp_path / "hw4"
    dst.mkdir()
    for name in ("metadata.json", "mapping.json", "testdata.json"):
        shutil.copyfile(hw4_sample / name, dst / name)
    return dst


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def save_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj), encoding="utf-8")


def test_the_sample_reads_without_problems(hw4_sample: Path) -> None:
    dataset, problems = scan_dataset(hw4_sample)
    assert problems == []
    assert dataset is not None and dataset == read_dataset(hw4_sample)
    assert len(dataset.speakers) == 10 and len(dataset.train) == 203 and len(dataset.test) == 48


def test_read_dataset_raises_the_first_problem_and_counts_the_rest(sample_json: Path) -> None:
    meta = load_json(sample_json / "metadata.json")
    meta["speakers"]["id10006"] = []
    meta["speakers"]["id10007"] = []
    save_json(sample_json / "metadata.json", meta)
    _, problems = scan_dataset(sample_json)
    assert len(problems) == 2
    with pytest.raises(DataError) as caught:
        read_dataset(sample_json)
    message = str(caught.value)
    assert message.startswith(problems[0]) and "1 more problem" in message
    assert f"automel data check {sample_json}" in message and "\n" not in message


def test_held_out_utterance_in_training_is_refused(sample_json: Path) -> None:
    entry = load_json(sample_json / "testdata.json")["utterances"][0]
    meta = load_json(sample_json / "metadata.json")
    meta["speakers"]["id10001"].append(entry)
    save_json(sample_json / "metadata.json", meta)
    with pytest.raises(DataError, match=re.escape(str(sample_json / entry["feature_path"])) + ".*test utterance"):
        read_dataset(sample_json)


@pytest.mark.parametrize("how", ["absent", "empty"])
def test_testdata_is_optional(sample_json: Path, how: str) -> None:
    if how == "absent":
        (sample_json / "testdata.json").unlink()
    else:
        save_json(sample_json / "testdata.json", {"n_mels": 40, "utterances": []})
    dataset = read_dataset(sample_json)
    assert dataset.test == () and len(dataset.train) == 203


@pytest.mark.parametrize("path", ["../../etc/passwd", "/etc/passwd", "sub/uttr-x.pt", "..", "a\\b.pt", ""])
def test_feature_paths_must_be_plain_names(sample_json: Path, path: str) -> None:
    meta = load_json(sample_json / "metadata.json")
    meta["speakers"]["id10002"][3]["feature_path"] = path
    save_json(sample_json / "metadata.json", meta)
    with pytest.raises(DataError, match=re.escape(str(sample_json / "metadata.json")) + ".*inside the data set"):
        read_dataset(sample_json)


@pytest.mark.parametrize(("mel_len", "problem"), [(0, "at least 1"), (-5, "at least 1"), ("12", "integer"),
                                                 (True, "integer"), (None, "integer")])
def test_mel_len_is_a_positive_integer(sample_json: Path, mel_len: Any, problem: str) -> None:
    testdata = load_json(sample_json / "testdata.json")
    testdata["utterances"][7]["mel_len"] = mel_len
    save_json(sample_json / "testdata.json", testdata)
    name = testdata["utterances"][7]["feature_path"]
    with pytest.raises(DataError, match=re.escape(str(sample_json / "testdata.json")) + f": {name} .*{problem}"):
        read_dataset(sample_json)


@pytest.mark.parametrize(("key", "problem"), [("01", "speaker ids"), ("-0", "speaker ids"), ("٣", "speaker ids")])
def test_speaker_ids_are_plain_integers(sample_json: Path, key: str, problem: str) -> None:
    mapping = load_json(sample_json / "mapping.json")
    mapping["id2speaker"][key] = mapping["id2speaker"].pop("1")
    save_json(sample_json / "mapping.json", mapping)
    with pytest.raises(DataError, match=re.escape(str(sample_json / "mapping.json")) + f".*{problem}"):
        read_dataset(sample_json)


def test_no_speakers_is_nothing_to_train_on(sample_json: Path) -> None:
    save_json(sample_json / "metadata.json", {"n_mels": 40, "speakers": {}})
    save_json(sample_json / "mapping.json", {"speaker2id": {}, "id2speaker": {}})
    (sample_json / "testdata.json").unlink()
    with pytest.raises(DataError, match="no speakers"):
        read_dataset(sample_json)


@pytest.mark.parametrize("meta", [{"n_mels": True, "speakers": {}}, {"n_mels": 0, "speakers": {}}, {"n_mels": 40},
                                  [1, 2]])
def test_metadata_needs_n_mels_and_speakers(sample_json: Path, meta: Any) -> None:
    save_json(sample_json / "metadata.json", meta)
    dataset, problems = scan_dataset(sample_json)
    assert dataset is None and len(problems) == 1 and "n_mels" in problems[0]


def test_unreadable_json_is_a_data_error(sample_json: Path) -> None:
    (sample_json / "mapping.json").unlink()
    (sample_json / "mapping.json").mkdir()  # a folder where a file should be
    with pytest.raises(DataError, match=re.escape(str(sample_json / "mapping.json")) + ": cannot be read"):
        read_dataset(sample_json)
