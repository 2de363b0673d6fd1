"""``automel data check``: a valid HW4 data set passes; every kind of damage is one line naming its file.

All damage is done to a copy of ../shared/data/hw4-sample in tmp_path; the shared data is never touched.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from automel.data.check import check_dataset
from tests.conftest import run


@pytest.fixture
def sample_copy(hw4_sample: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "hw4"
    shutil.copytree(hw4_sample, dst)
    return dst


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def save_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2), encoding="utf-8")


def train_names(root: Path) -> list[str]:
    meta = load_json(root / "metadata.json")
    return [u["feature_path"] for utts in meta["speakers"].values() for u in utts]


def held_out_names(root: Path) -> list[str]:
    return [u["feature_path"] for u in load_json(root / "testdata.json")["utterances"]]


def problem_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("problem:")]


def check_fails(cli: CliRunner, root: Path) -> list[str]:
    """Run the check, expect exit 2, return the problem lines (and check the closing count line)."""
    code, _, err = run(cli, "data", "check", root)
    assert code == 2, err
    lines = problem_lines(err)
    assert lines, err
    assert f"{len(lines)} problem(s) in {root}" in err
    return lines


def naming(lines: list[str], fragment: str, *words: str) -> list[str]:
    """The problem lines that name ``fragment`` (a path) and contain every one of ``words``."""
    return [line for line in lines if fragment in line and all(w.lower() in line.lower() for w in words)]


# --- the valid data set -------------------------------------------------------------------------------


def test_hw4_sample_is_valid(cli: CliRunner, hw4_sample: Path) -> None:
    code, out, err = run(cli, "data", "check", hw4_sample)
    assert code == 0, err
    assert re.search(r"\bspeakers\b\W+10\b", out), out
    assert re.search(r"\btrain utterances\b\W+203\b", out), out
    assert re.search(r"\btest utterances\b\W+48\b", out), out
    assert re.search(r"\bproblems\b\W+0\b", out), out
    assert "valid:" in out
    assert not problem_lines(err)


def test_check_dataset_report(hw4_sample: Path) -> None:
    report = check_dataset(hw4_sample)
    assert report.ok and report.problems == []
    assert report.kind == "hw4"
    assert report.speakers == 10
    assert len(report.train_lengths) == 203 and len(report.test_lengths) == 48
    meta = load_json(hw4_sample / "metadata.json")
    mel_lens = sorted(u["mel_len"] for utts in meta["speakers"].values() for u in utts)
    assert sorted(report.train_lengths) == mel_lens
    assert report.shortest is not None and report.longest is not None
    assert report.shortest[1] == min(report.train_lengths + report.test_lengths)
    assert report.longest[1] == max(report.train_lengths + report.test_lengths)


def test_progress_reports_every_file(hw4_sample: Path) -> None:
    seen: list[tuple[int, int]] = []
    check_dataset(hw4_sample, on_progress=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 251) for i in range(1, 252)]


# --- one kind of damage at a time ---------------------------------------------------------------------
# Each corruption damages the copy and returns (the file the problem line must name, words it must contain).

Corruption = Callable[[Path], tuple[str, tuple[str, ...]]]


def missing_pt(root: Path) -> tuple[str, tuple[str, ...]]:
    name = train_names(root)[3]
    (root / name).unlink()
    return name, ("missing",)


def dict_pt(root: Path) -> tuple[str, tuple[str, ...]]:
    name = train_names(root)[5]
    tensor = torch.load(root / name, weights_only=True)
    torch.save({"features": tensor}, root / name)
    return name, ("dict", "not a tensor")


def truncated_pt(root: Path) -> tuple[str, tuple[str, ...]]:
    name = train_names(root)[7]
    data = (root / name).read_bytes()
    (root / name).write_bytes(data[: len(data) // 2])
    return name, ("truncated",)


def wrong_n_mels(root: Path) -> tuple[str, tuple[str, ...]]:
    name = train_names(root)[11]
    tensor = torch.load(root / name, weights_only=True)
    torch.save(tensor[:, :39].clone(), root / name)
    return name, ("shape", "39")


def one_dimensional(root: Path) -> tuple[str, tuple[str, ...]]:
    name = held_out_names(root)[2]
    tensor = torch.load(root / name, weights_only=True)
    torch.save(tensor[:, 0].clone(), root / name)
    return name, ("shape",)


def mel_len_mismatch(root: Path) -> tuple[str, tuple[str, ...]]:
    meta = load_json(root / "metadata.json")
    entry = meta["speakers"]["id10004"][1]
    entry["mel_len"] += 7
    save_json(root / "metadata.json", meta)
    return entry["feature_path"], ("mel_len", str(entry["mel_len"]))


def _poison(root: Path, name: str, value: float) -> None:
    tensor = torch.load(root / name, weights_only=True)
    tensor[17, 3] = value
    torch.save(tensor, root / name)


def nan_values(root: Path) -> tuple[str, tuple[str, ...]]:
    name = train_names(root)[20]
    _poison(root, name, float("nan"))
    return name, ("NaN",)


def inf_values(root: Path) -> tuple[str, tuple[str, ...]]:
    name = held_out_names(root)[9]
    _poison(root, name, float("-inf"))
    return name, ("inf",)


def speaker_missing_from_mapping(root: Path) -> tuple[str, tuple[str, ...]]:
    meta = load_json(root / "metadata.json")
    moved = meta["speakers"]["id10002"]
    meta["speakers"]["id10002"], meta["speakers"]["id99999"] = moved[:10], moved[10:]
    save_json(root / "metadata.json", meta)
    return "mapping.json", ("id99999", "missing")


def ids_not_contiguous(root: Path) -> tuple[str, tuple[str, ...]]:
    mapping = load_json(root / "mapping.json")
    name = mapping["id2speaker"].pop("2")
    mapping["id2speaker"]["10"] = name
    mapping["speaker2id"][name] = 10
    save_json(root / "mapping.json", mapping)
    return "mapping.json", ("0..9",)


def id_not_a_plain_integer(root: Path) -> tuple[str, tuple[str, ...]]:
    """'²' passes str.isdigit() but int() rejects it: the check must report it, not crash."""
    mapping = load_json(root / "mapping.json")
    mapping["id2speaker"]["²"] = mapping["id2speaker"].pop("2")
    save_json(root / "mapping.json", mapping)
    return "mapping.json", ("speaker ids",)


def empty_speaker(root: Path) -> tuple[str, tuple[str, ...]]:
    meta = load_json(root / "metadata.json")
    meta["speakers"]["id10006"] = []
    save_json(root / "metadata.json", meta)
    return "metadata.json", ("id10006", "empty")


def duplicate_feature_path(root: Path) -> tuple[str, tuple[str, ...]]:
    meta = load_json(root / "metadata.json")
    entry = meta["speakers"]["id10001"][0]
    meta["speakers"]["id10008"].append(dict(entry))
    save_json(root / "metadata.json", meta)
    return entry["feature_path"], ("duplicate",)


def held_out_list_missing(root: Path) -> tuple[str, tuple[str, ...]]:
    testdata = load_json(root / "testdata.json")
    del testdata["utterances"]
    save_json(root / "testdata.json", testdata)
    return "testdata.json", ("utterances",)


def held_out_n_mels_differs(root: Path) -> tuple[str, tuple[str, ...]]:
    testdata = load_json(root / "testdata.json")
    testdata["n_mels"] = 80
    save_json(root / "testdata.json", testdata)
    return "testdata.json", ("n_mels", "80", "40")


def held_out_also_in_training(root: Path) -> tuple[str, tuple[str, ...]]:
    meta = load_json(root / "metadata.json")
    entry = load_json(root / "testdata.json")["utterances"][4]
    meta["speakers"]["id10003"].append(entry)
    save_json(root / "metadata.json", meta)
    return entry["feature_path"], ("training", "test")


def speaker_not_a_list(root: Path) -> tuple[str, tuple[str, ...]]:
    meta = load_json(root / "metadata.json")
    meta["speakers"]["id10009"] = {"feature_path": "x.pt"}
    save_json(root / "metadata.json", meta)
    return "metadata.json", ("id10009", "list")


def speaker_with_two_ids(root: Path) -> tuple[str, tuple[str, ...]]:
    mapping = load_json(root / "mapping.json")
    mapping["id2speaker"]["3"] = mapping["id2speaker"]["2"]
    save_json(root / "mapping.json", mapping)
    return "mapping.json", (mapping["id2speaker"]["2"], "2 ids")


def text_file_pt(root: Path) -> tuple[str, tuple[str, ...]]:
    """A text file named .pt: KeyError escaped the weights-only unpickler."""
    name = train_names(root)[13]
    (root / name).write_text("hello world\n", encoding="utf-8")
    return name, ("not a torch tensor file",)


def passwd_copy_pt(root: Path) -> tuple[str, tuple[str, ...]]:
    """/etc/passwd's bytes in a .pt: IndexError escaped the weights-only unpickler."""
    name = train_names(root)[14]
    (root / name).write_text("root:x:0:0:root:/root:/bin/bash\n", encoding="utf-8")
    return name, ("not a torch tensor file",)


def json_text_pt(root: Path) -> tuple[str, tuple[str, ...]]:
    """The weights-only unpickler's reason comes on a line of its own: it must still reach the message."""
    name = held_out_names(root)[8]
    (root / name).write_text('{"features": [1, 2, 3]}', encoding="utf-8")
    return name, ("refused: not a plain tensor file (Unsupported operand",)


def bit_flip_in_the_tensor_data(root: Path) -> tuple[str, tuple[str, ...]]:
    """torch.load never checks the archive's CRCs: a flipped bit would load as a silently wrong value."""
    name = train_names(root)[15]
    data = bytearray((root / name).read_bytes())
    data[len(data) // 2] ^= 0x10
    (root / name).write_bytes(bytes(data))
    return name, ("corrupt", "CRC")


def symlink_outside(root: Path) -> tuple[str, tuple[str, ...]]:
    name = train_names(root)[16]
    outside = root.parent / "outside.pt"
    (root / name).replace(outside)
    (root / name).symlink_to(outside)
    return name, ("refused", "symbolic link", "outside the data set")


def symlink_loop(root: Path) -> tuple[str, tuple[str, ...]]:
    name = held_out_names(root)[3]
    (root / name).unlink()
    (root / name).symlink_to(root / name)
    return name, ("cannot be read",)


def folder_named_pt(root: Path) -> tuple[str, tuple[str, ...]]:
    name = held_out_names(root)[6]
    (root / name).unlink()
    (root / name).mkdir()
    return name, ("not a regular file",)


def metadata_not_json(root: Path) -> tuple[str, tuple[str, ...]]:
    text = (root / "metadata.json").read_text(encoding="utf-8")
    (root / "metadata.json").write_text(text[: len(text) // 2], encoding="utf-8")
    return "metadata.json", ("JSON",)


CORRUPTIONS: list[Corruption] = [
    missing_pt, dict_pt, truncated_pt, wrong_n_mels, one_dimensional, mel_len_mismatch, nan_values,
    inf_values, speaker_missing_from_mapping, ids_not_contiguous, id_not_a_plain_integer, empty_speaker,
    duplicate_feature_path, held_out_list_missing, held_out_n_mels_differs, held_out_also_in_training,
    speaker_not_a_list, speaker_with_two_ids, text_file_pt, passwd_copy_pt, json_text_pt, bit_flip_in_the_tensor_data,
    symlink_outside, symlink_loop, folder_named_pt, metadata_not_json,
]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=[c.__name__ for c in CORRUPTIONS])
def test_each_problem_is_a_line_naming_its_file(cli: CliRunner, sample_copy: Path, corrupt: Corruption) -> None:
    name, words = corrupt(sample_copy)
    lines = check_fails(cli, sample_copy)
    assert naming(lines, str(sample_copy / name), *words), (name, words, lines)
    assert not any(line.endswith("()") for line in lines), lines  # every reason is filled in


@pytest.mark.parametrize("how", ["absent", "empty"])
def test_no_test_utterances_is_valid(cli: CliRunner, sample_copy: Path, how: str) -> None:
    """testdata.json is optional (every command opens such a data set): absent or empty, no test utterances."""
    if how == "absent":
        (sample_copy / "testdata.json").unlink()
    else:
        save_json(sample_copy / "testdata.json", {"n_mels": 40, "utterances": []})
    code, out, err = run(cli, "data", "check", sample_copy)
    assert code == 0, err
    assert re.search(r"\btest utterances\b\W+0\b", out), out


def test_symlink_inside_the_data_set_is_followed(cli: CliRunner, sample_copy: Path) -> None:
    name = train_names(sample_copy)[2]
    (sample_copy / name).replace(sample_copy / "kept.pt")
    (sample_copy / name).symlink_to("kept.pt")
    code, _, err = run(cli, "data", "check", sample_copy)
    assert code == 0, err


def test_two_problems_give_two_lines(cli: CliRunner, sample_copy: Path) -> None:
    missing, _ = missing_pt(sample_copy)
    poisoned, _ = nan_values(sample_copy)
    lines = check_fails(cli, sample_copy)
    assert len(lines) == 2, lines
    assert len(naming(lines, str(sample_copy / missing), "missing")) == 1
    assert len(naming(lines, str(sample_copy / poisoned), "NaN")) == 1
    # the summary still counts the readable utterances
    report = check_dataset(sample_copy)
    assert len(report.problems) == 2
    assert len(report.train_lengths) + len(report.test_lengths) == 251 - 2


def test_not_a_directory(cli: CliRunner, tmp_path: Path) -> None:
    lines = check_fails(cli, tmp_path / "nowhere")
    assert naming(lines, str(tmp_path / "nowhere"), "not a directory")


# --- a feature file that would run code -----------------------------------------------------------------


class Evil:
    """Unpickling this (torch.load with weights_only=False) creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_the_payload_is_live(tmp_path: Path) -> None:
    """Control for the test below: an unsafe load of such a file really does create the marker."""
    control = tmp_path / "CONTROL"
    torch.save(Evil(control), tmp_path / "evil.pt")
    assert not control.exists()
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert control.exists()


def test_pickle_payload_is_refused_and_never_run(cli: CliRunner, sample_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    name = train_names(sample_copy)[42]
    torch.save(Evil(marker), sample_copy / name)
    assert not marker.exists()
    lines = check_fails(cli, sample_copy)
    assert len(lines) == 1, lines
    line = lines[0]
    assert str(sample_copy / name) in line
    assert "refused" in line and "not a plain tensor" in line
    assert "\x1b" not in line  # torch's message carries terminal escapes; they must not reach the user
    assert "can still be loaded" not in line  # nor torch's advice to load the file unsafely
    assert not marker.exists()
