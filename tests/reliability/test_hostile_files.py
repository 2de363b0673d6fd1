"""Issue 22, cause 5 and the study files: hostile JSON and broken study databases, through the CLI.

A data set's JSON (``metadata.json``, ``mapping.json``, ``testdata.json``) and ``train --config`` go through
one reader with limits (:mod:`automel.userjson`): nesting depth, integer size, valid strings, and no
control character in a path. Each hostile file is one line naming the file and the field, exit 2, and
nothing written. A broken ``*.db`` in the home hides no healthy study from ``automel studies``, and a
read-only ``show`` writes nothing into a 0-byte one.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial
from typer.testing import CliRunner

from automel.engine.handle import StudyHandle
from automel.engine.study import open_storage
from tests.conftest import run
from tests.reliability.test_data_inputs import write_tiny

TRAIN = ["--steps", 2, "--valid-every", 1, "--device", "cpu"]
Edit = Callable[[str], str]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.fixture
def data(tiny: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny, tmp_path / "data"))


def first_path(text: str) -> str:
    """The first feature path in a JSON text."""
    start = text.index('"feature_path": "') + len('"feature_path": "')
    return text[start:text.index('"', start)]


def replace_first_path(new: str) -> Edit:
    return lambda text: text.replace(first_path(text), new, 1)


def first_mel_len(digits: str) -> Edit:
    def edit(text: str) -> str:
        start = text.index('"mel_len": ') + len('"mel_len": ')
        end = start + len(text[start:]) - len(text[start:].lstrip("0123456789"))
        return text[:start] + digits + text[end:]
    return edit


def deep(text: str) -> str:
    return text.rstrip().rstrip("}") + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"


# (file, edit of its text, words the error line must hold besides the file)
CASES: dict[str, tuple[str, Edit, tuple[str, ...]]] = {
    "nul_in_feature_path": ("metadata.json", replace_first_path("uttr\\u0000x.pt"), ("feature_path", "control")),
    "newline_in_test_path": ("testdata.json", replace_first_path("uttr\\nx.pt"), ("feature_path", "control")),
    "lone_surrogate_in_path": ("metadata.json", replace_first_path("\\ud800.pt"), ("feature_path", "Unicode")),
    "5000_digit_id2speaker_key": ("mapping.json", lambda t: t.replace('"0":', '"' + "1" * 5000 + '":', 1),
                                  ("id2speaker", "5,000 characters")),
    "5000_digit_mel_len": ("metadata.json", first_mel_len("9" * 5000), ("mel_len", "out of range")),
    "4000_digit_mel_len": ("metadata.json", first_mel_len("9" * 4000), ("mel_len", "out of range")),
    "int64_mel_len": ("metadata.json", first_mel_len(str(10**18)), ("mel_len", "at most 100,000,000")),
    "100000_deep_metadata": ("metadata.json", deep, ("nested", "levels deep")),
    "100000_deep_testdata": ("testdata.json", lambda t: "[" * 100_000 + "]" * 100_000, ("nested", "levels deep")),
    "nan_n_mels": ("metadata.json", lambda t: t.replace('"n_mels": 40', '"n_mels": NaN', 1), ("n_mels", "finite")),
    "huge_n_mels": ("metadata.json", lambda t: t.replace('"n_mels": 40', '"n_mels": 4000000000', 1),
                    ("n_mels", "4096")),
    "control_in_speaker_name": ("mapping.json", lambda t: t.replace('"id10001"', '"id\\u000a10001"'),
                                ("id2speaker", "control characters")),
}


def damage(data: Path, case: str) -> tuple[Path, tuple[str, ...]]:
    name, edit, words = CASES[case]
    path = data / name
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return path, words


def one_line_error(code: int, out: str, err: str, *names: object) -> str:
    assert "Traceback" not in out + err, out + err
    assert code == 2, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


@pytest.mark.parametrize("case", list(CASES))
def test_data_check_names_the_file_and_field_of_hostile_json(cli: CliRunner, data: Path, case: str) -> None:
    path, words = damage(data, case)
    before = sorted(p.name for p in data.iterdir())
    code, out, err = run(cli, "data", "check", data)
    assert "Traceback" not in out + err, out + err
    assert code == 2, out + err
    problems = [line for line in err.splitlines() if line.startswith("problem: ")]
    assert any(str(path) in line and all(w in line for w in words) for line in problems), (words, problems)
    assert all(len(line) < 400 for line in problems), "a 5,000-character value is shortened"
    assert sorted(p.name for p in data.iterdir()) == before


@pytest.mark.parametrize("case", list(CASES))
def test_train_refuses_hostile_json_in_one_line(cli: CliRunner, data: Path, tmp_path: Path, case: str) -> None:
    path, words = damage(data, case)
    home = tmp_path / "home"
    code, out, err = run(cli, "train", "--data", data, *TRAIN, "--out", tmp_path / "run", "--home", home)
    one_line_error(code, out, err, path, *words)
    assert not (tmp_path / "run").exists()
    assert not (home / "cache").exists() or not list((home / "cache").iterdir())


@pytest.mark.parametrize(("text", "words"), [
    ("[" * 100_000 + "]" * 100_000, ("nested",)),
    ('{"lr": ' + "1" * 5000 + "}", ("lr", "out of range")),
    ('{"lr": NaN}', ("lr", "finite")),
    ('{"format": "automel-run", "params": 5}', ("'params' must be a JSON object",)),
    ('{"name": "\\ud800"}', ("name", "Unicode")),
], ids=["deep", "5000_digits", "nan", "params_not_object", "surrogate"])
def test_train_config_with_hostile_json_is_one_line(cli: CliRunner, data: Path, tmp_path: Path, text: str,
                                                    words: tuple[str, ...]) -> None:
    config = tmp_path / "params.json"
    config.write_text(text, encoding="utf-8")
    code, out, err = run(cli, "train", "--config", config, "--data", data, *TRAIN, "--out", tmp_path / "run",
                         "--home", tmp_path / "home")
    one_line_error(code, out, err, config, *words)
    assert not (tmp_path / "run").exists()


# --- broken study databases in the home -------------------------------------------------------------------


def healthy_study(home: Path, name: str) -> None:
    study = optuna.create_study(study_name=name, direction="maximize",
                                storage=open_storage(StudyHandle(home, name).url, heartbeat=False))
    study.set_user_attr("dataset", {"name": "tiny", "kind": "hw4"})
    study.add_trial(create_trial(params={"lr": 1e-3}, distributions={"lr": FloatDistribution(1e-4, 1e-2)},
                                 value=0.5))


def snapshot(home: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in home.iterdir()}


@pytest.mark.parametrize("output", ["table", "json", "csv"])
def test_a_corrupt_db_hides_no_healthy_study(cli: CliRunner, tmp_path: Path, output: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    healthy_study(home, "good")
    (home / "empty.db").write_bytes(b"")
    (home / "junk.db").write_bytes(os.urandom(4096))
    (home / "other.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)  # a torn header
    before = snapshot(home)
    code, out, err = run(cli, "studies", "--home", home, "--format", output)
    assert code == 0 and "Traceback" not in out + err, out + err
    warnings = err.strip().splitlines()
    assert len(warnings) == 3 and all(line.startswith("warning: ") for line in warnings), err
    for name, reason in (("empty", "empty (0 bytes)"), ("junk", "not a readable SQLite database"),
                         ("other", "")):
        assert any(str(home / f"{name}.db") in line and reason in line for line in warnings), (name, warnings)
    if output == "json":
        rows = {row["study"]: row for row in json.loads(out)}
        assert rows["good"]["complete"] == 1 and "error" not in rows["good"]
        assert all(rows[name]["error"] for name in ("empty", "junk", "other"))
    else:
        assert "good" in out and "empty" in out and "junk" in out
    assert snapshot(home) == before, "a read-only listing changed or created a file"


def test_show_writes_nothing_into_a_zero_byte_db(cli: CliRunner, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "s.db").write_bytes(b"")
    code, out, err = run(cli, "show", "--home", home, "--study", "s")
    line = one_line_error(code, out, err, home / "s.db", "empty (0 bytes)")
    assert "cannot open storage" in line
    assert (home / "s.db").stat().st_size == 0
    assert sorted(p.name for p in home.iterdir()) == ["s.db"], "show created a file"


@pytest.mark.parametrize("command", ["show", "export", "refit", "report"])
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_reading_a_study_from_a_missing_storage_file_creates_nothing(cli: CliRunner, tmp_path: Path, kind: str,
                                                                      command: str) -> None:
    """``--storage sqlite:///missing.db`` or ``journal:missing.log`` on a command that reads a study: one line,
    and no empty database or journal left where there was none."""
    missing = tmp_path / ("missing.db" if kind == "sqlite" else "missing.log")
    url = f"sqlite:///{missing}" if kind == "sqlite" else f"journal:{missing}"
    extra = ["--out", tmp_path / "home" / "r.html"] if command == "report" else []
    (tmp_path / "home").mkdir()
    code, out, err = run(cli, command, "--study", "s", "--storage", url, "--home", tmp_path / "home", *extra)
    line = one_line_error(code, out, err, missing, "does not exist")
    assert "no study 's' there" in line
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == []


def test_a_search_still_starts_a_study_in_an_empty_db(tmp_path: Path) -> None:
    """Only reads refuse a 0-byte file: the search that owns it may create its schema there."""
    url = StudyHandle(tmp_path, "s").url
    (tmp_path / "s.db").write_bytes(b"")
    storage = open_storage(url)  # with heartbeats: a search's own opening
    optuna.create_study(study_name="s", storage=storage)
    assert (tmp_path / "s.db").stat().st_size > 0
