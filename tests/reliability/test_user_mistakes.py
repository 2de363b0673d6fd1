"""Ordinary user mistakes and hostile model folders: one error line, a non-zero exit, nothing half written.

Every case runs through the CLI as a user would type it (issue 13, items 5 and 7, and the cases that
already held). ``train`` runs once per module: a 4-step model is enough to load, predict and break.
"""

from __future__ import annotations

import builtins
import csv
import json
import pickle
import shutil
import socket
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import HW4_ANSWERS, HW4_SAMPLE, need, run


def _renamed_copy(target: Path, rename: Callable[[str], str]) -> Path:
    """hw4-sample with its speakers renamed (features copied, not linked)."""
    shutil.copytree(need(HW4_SAMPLE), target)
    meta = json.loads((target / "metadata.json").read_text())
    meta["speakers"] = {rename(s): items for s, items in meta["speakers"].items()}
    (target / "metadata.json").write_text(json.dumps(meta))
    names = sorted(meta["speakers"])
    (target / "mapping.json").write_text(json.dumps({"speaker2id": {s: i for i, s in enumerate(names)},
                                                     "id2speaker": {str(i): s for i, s in enumerate(names)}}))
    return target


@pytest.fixture(scope="module")
def other_speakers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The probe's case: the same recordings under other names, ``other0`` ... ``other9``."""
    return _renamed_copy(tmp_path_factory.mktemp("data") / "others", lambda s: f"other{int(s[-2:]) - 1}")


@pytest.fixture(scope="module")
def one_new_speaker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _renamed_copy(tmp_path_factory.mktemp("data") / "one-new", lambda s: "newcomer" if s == "id10010" else s)


def one_line_error(code: int, stderr: str, *names: object, exit_code: int = 2) -> str:
    """The single ``error:`` line on stderr, checked to name each of ``names``; no traceback."""
    assert "Traceback" not in stderr, stderr
    assert code == exit_code, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def nothing_written(out: Path) -> None:
    """Neither ``out`` nor a temporary file beside it (``.output.csv.xxxx``) is left."""
    assert not out.exists()
    if out.parent.is_dir():
        assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def predict(cli: CliRunner, model_dir: Path, data: Path, out: Path, home: Path, *extra: object) -> tuple[int, str, str]:
    return run(cli, "predict", model_dir, "--data", data, "--out", out, "--device", "cpu", "--home", home, *extra)


# --- item 5: a model trained on other speakers --------------------------------------------------------------


@pytest.mark.parametrize(("case", "counts"), [
    ("other_speakers", ("20 speakers differ", "10 only in the data set, e.g. other0", "10 only in the model")),
    ("one_new_speaker", ("2 speakers differ", "1 only in the data set, e.g. newcomer",
                         "1 only in the model, e.g. id10010")),
])
def test_predict_refuses_a_data_set_with_other_speakers(cli: CliRunner, model: Path, shared_home: Path,
                                                        tmp_path: Path, request: pytest.FixtureRequest,
                                                        case: str, counts: tuple[str, ...]) -> None:
    data: Path = request.getfixturevalue(case)
    out = tmp_path / "output.csv"
    code, _, stderr = predict(cli, model, data, out, shared_home)
    one_line_error(code, stderr, data, model, "--allow-unknown-speakers", *counts)
    nothing_written(out)


def test_allow_unknown_speakers_predicts_and_says_how_many_differ(cli: CliRunner, model: Path, shared_home: Path,
                                                                 other_speakers: Path, tmp_path: Path) -> None:
    out = tmp_path / "output.csv"
    code, stdout, stderr = predict(cli, model, other_speakers, out, shared_home, "--allow-unknown-speakers")
    assert code == 0, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: 20 speakers differ"), stderr
    assert "predictions name the model's 10 speakers only" in lines[0]
    with out.open(newline="") as fh:
        rows = list(csv.reader(fh))
    model_speakers = set(json.loads((model / "config.json").read_text())["speakers"])
    assert rows[0] == ["Id", "Category"] and len(rows) > 1
    assert {category for _, category in rows[1:]} <= model_speakers
    assert "wrote" in stdout


def test_the_same_speakers_in_another_order_are_no_difference(cli: CliRunner, model: Path, shared_home: Path,
                                                              tmp_path: Path) -> None:
    data = tmp_path / "reordered"
    shutil.copytree(need(HW4_SAMPLE), data)
    names = sorted(json.loads((data / "metadata.json").read_text())["speakers"], reverse=True)
    (data / "mapping.json").write_text(json.dumps({"speaker2id": {s: i for i, s in enumerate(names)},
                                                   "id2speaker": {str(i): s for i, s in enumerate(names)}}))
    out = tmp_path / "output.csv"
    code, _, stderr = predict(cli, model, data, out, shared_home)
    assert code == 0 and stderr.strip() == "", stderr
    assert out.is_file()


# --- item 7: predict --out ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("where", "named"), [
    ("missing/output.csv", "does not exist"),
    ("missing/deeper/output.csv", "does not exist"),
    ("a-folder", "is a folder"),
])
def test_predict_out_must_be_a_file_in_an_existing_folder(cli: CliRunner, model: Path, shared_home: Path,
                                                          tmp_path: Path, where: str, named: str) -> None:
    (tmp_path / "a-folder").mkdir()
    out = tmp_path / where
    code, _, stderr = predict(cli, model, need(HW4_SAMPLE), out, shared_home)
    one_line_error(code, stderr, out, named)
    if out.is_dir():
        assert list(out.iterdir()) == []
    else:
        assert not out.parent.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


# --- item 7: score -----------------------------------------------------------------------------------------


def _key_rows() -> str:
    return need(HW4_ANSWERS).read_text(encoding="utf-8")


@pytest.mark.parametrize(("make", "named"), [
    (lambda p: p.write_bytes(b"\xff\xfeI\x00d\x00,\x00"), "not UTF-8 text"),  # UTF-16, as some spreadsheets save
    (lambda p: p.write_bytes(b"Id,Category\nuttr-1.pt,id\xe9\n"), "not UTF-8 text"),  # Latin-1
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(b"Id,Category\nuttr-1.pt," + b"x" * 200_000 + b"\n"), "line 2 is not CSV"),
])
def test_score_gives_one_line_on_an_unreadable_submission(cli: CliRunner, tmp_path: Path,
                                                          make: Callable[[Path], Any], named: str) -> None:
    submission = tmp_path / "submission.csv"
    make(submission)
    code, stdout, stderr = run(cli, "score", submission, need(HW4_ANSWERS))
    one_line_error(code, stderr, submission, named)
    assert stdout == ""


def test_score_gives_one_line_on_a_folder_as_answer_key(cli: CliRunner, tmp_path: Path) -> None:
    submission = tmp_path / "submission.csv"
    submission.write_text(_key_rows(), encoding="utf-8")
    code, _, stderr = run(cli, "score", submission, tmp_path)
    one_line_error(code, stderr, tmp_path, "is a folder")


@pytest.mark.parametrize("dress", [
    lambda text: "\ufeff" + text,  # the byte-order mark Excel writes
    lambda text: text + "\n",  # a trailing blank line
    lambda text: "\ufeff" + text.replace("\n", "\r\n") + "\r\n\r\n",  # both, Windows line ends
    lambda text: text.replace(",", ", "),  # spaces after the commas
])
def test_score_accepts_a_bom_and_blank_lines_as_prepare_does(cli: CliRunner, tmp_path: Path,
                                                             dress: Callable[[str], str]) -> None:
    total = len(_key_rows().strip().splitlines()) - 1
    submission = tmp_path / "submission.csv"
    submission.write_bytes(dress(_key_rows()).encode("utf-8"))
    code, stdout, stderr = run(cli, "score", submission, need(HW4_ANSWERS))
    assert code == 0, stderr
    assert f"accuracy 1.0000 ({total}/{total})" in stdout
    key = tmp_path / "key.csv"  # the answer key is read the same way
    key.write_bytes(dress(_key_rows()).encode("utf-8"))
    code, stdout, stderr = run(cli, "score", need(HW4_ANSWERS), key)
    assert code == 0 and f"({total}/{total})" in stdout, stderr


# --- item 7: dashboard -------------------------------------------------------------------------------------


def _never_serve(*_: object, **__: object) -> None:
    raise AssertionError("the dashboard started serving")


def test_dashboard_on_a_port_in_use_fails_at_once(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna_dashboard

    monkeypatch.setattr(optuna_dashboard, "run_server", _never_serve)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        code, stdout, stderr = run(cli, "dashboard", "--port", port)
        seconds = time.monotonic() - started
    line = one_line_error(code, stderr, f"port {port}", "127.0.0.1", "already in use")
    assert "--port" in line and stdout == ""
    assert seconds < 10


def test_dashboard_binds_to_loopback_by_default(cli: CliRunner, monkeypatch: pytest.MonkeyPatch,
                                                isolated_home: Path) -> None:
    import optuna
    import optuna_dashboard

    from automel.engine.handle import StudyHandle

    optuna.create_study(study_name="mine", storage=StudyHandle(isolated_home, "mine").url)
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(optuna_dashboard, "run_server", lambda storage, **kwargs: calls.append(kwargs))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code, stdout, stderr = run(cli, "dashboard", "--study", "mine", "--port", port)
    assert code == 0, stderr
    assert [(c["host"], c["port"]) for c in calls] == [("127.0.0.1", port)]
    assert f"http://127.0.0.1:{port}/" in stdout


# --- cases that already held: hostile and broken model folders ------------------------------------------------


class _Hostile:
    """Unpickling this creates the file ``marker``: proof that a pickle was run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return builtins.open, (str(self.marker), "w")


def _safetensors(header: bytes, body: bytes = b"", length: int | None = None) -> bytes:
    return struct.pack("<Q", len(header) if length is None else length) + header + body


def _weights(path: Path) -> Path:
    return path / "model.safetensors"


def _config(path: Path) -> Path:
    return path / "config.json"


BROKEN: dict[str, tuple[Callable[[Path], Any], str]] = {
    "pickle as weights": (lambda d: _weights(d).write_bytes(pickle.dumps(_Hostile(d.parent / "PWNED"))),
                          "model.safetensors: cannot read weights"),
    "torch.save pickle as weights": (
        lambda d: _weights(d).write_bytes(b"PK\x03\x04" + pickle.dumps(_Hostile(d.parent / "PWNED"))),
        "model.safetensors: cannot read weights"),
    "header length 2**63": (lambda d: _weights(d).write_bytes(_safetensors(b"{}", length=2**63)),
                            "model.safetensors: cannot read weights"),
    "header length over the limit": (lambda d: _weights(d).write_bytes(_safetensors(b"{}", length=100_000_001)),
                                     "model.safetensors: cannot read weights"),
    "header longer than the file": (lambda d: _weights(d).write_bytes(_safetensors(b"{}", length=4096)),
                                    "model.safetensors: cannot read weights"),
    "header not JSON": (lambda d: _weights(d).write_bytes(_safetensors(b"{'a': __import__('os')}")),
                        "model.safetensors: cannot read weights"),
    "offsets past the end": (lambda d: _weights(d).write_bytes(_safetensors(json.dumps(
        {"w": {"dtype": "F32", "shape": [10**6, 10**3], "data_offsets": [0, 4 * 10**9]}}).encode(), b"\0" * 16)),
        "model.safetensors: cannot read weights"),
    "truncated weights": (lambda d: _weights(d).write_bytes(_weights(d).read_bytes()[:-1000]),
                          "model.safetensors: cannot read weights"),
    "weights cut to the header": (lambda d: _weights(d).write_bytes(_weights(d).read_bytes()[:8]),
                                  "model.safetensors: cannot read weights"),
    "weights missing": (lambda d: _weights(d).unlink(), "model.safetensors: cannot read weights"),
    "weights a folder": (lambda d: (_weights(d).unlink(), _weights(d).mkdir()), "model.safetensors"),
    "weights a link to /etc/passwd": (lambda d: (_weights(d).unlink(), _weights(d).symlink_to("/etc/passwd")),
                                      "model.safetensors: cannot read weights"),
    "config missing": (lambda d: _config(d).unlink(), "no config.json; not a run directory"),
    "config not JSON": (lambda d: _config(d).write_text("{oops"), "config.json: not valid JSON"),
    "config empty": (lambda d: _config(d).write_text(""), "config.json: not valid JSON"),
    "config of another format": (lambda d: _config(d).write_text('{"format": "x"}'), "not an automel run config"),
    "config incomplete": (lambda d: _config(d).write_text('{"format": "automel-run/1"}'), "incomplete run config"),
    "config with too few speakers": (lambda d: _config(d).write_text(json.dumps(
        {**json.loads(_config(d).read_text()), "speakers": ["a", "b"]})), "weights do not fit config.json"),
    "config with an unknown encoder": (lambda d: _config(d).write_text(json.dumps(
        {**json.loads(_config(d).read_text()), "params": {**json.loads(_config(d).read_text())["params"],
                                                          "encoder": "nope"}})), "unknown encoder 'nope'"),
    "config not UTF-8": (lambda d: _config(d).write_bytes(b"\xff\xfe{\x00}\x00"), "config.json"),
    "config a JSON list": (lambda d: _config(d).write_text("[1, 2]"), "config.json"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_predict_on_a_broken_or_hostile_model_folder(cli: CliRunner, model: Path, shared_home: Path, tmp_path: Path,
                                                     case: str) -> None:
    broken = tmp_path / "model"
    shutil.copytree(model, broken)
    make, named = BROKEN[case]
    make(broken)
    out = tmp_path / "output.csv"
    code, _, stderr = predict(cli, broken, need(HW4_SAMPLE), out, shared_home)
    one_line_error(code, stderr, named)
    nothing_written(out)
    assert not (tmp_path / "PWNED").exists()  # no pickle was run


def test_train_config_that_is_a_folder(cli: CliRunner, tmp_path: Path) -> None:
    code, _, stderr = run(cli, "train", "--config", tmp_path, "--data", need(HW4_SAMPLE), "--steps", 1,
                          "--out", tmp_path / "run", "--device", "cpu")
    one_line_error(code, stderr, tmp_path, "cannot read")
    assert not (tmp_path / "run").exists()
