"""Issue 22, causes 7 (CLI), 8, 11 and 13, and the debatable items on stderr noise, spreadsheet formulas, the
worker's seed and ``/tmp`` leftovers: each driven through the CLI as a user would.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from typer.testing import CliRunner
from typer.utils import get_params_from_function

from automel.cli import app, data_cli
from automel.engine import parallel
from automel.engine.study import TrialSeededSampler
from automel.redact import redact
from automel.scratch import PREFIX, sweep_scratch
from tests.conftest import run
from tests.reliability.test_data_inputs import write_tiny

TRAIN = ["--steps", 2, "--valid-every", 1, "--device", "cpu"]
PASSWORD = "s3cr3t-pw"
SECRET_URL = f"postgresql+psycopg://alice:{PASSWORD}@127.0.0.1:9/studies"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("tiny") / "tiny")


def one_line_error(code: int, out: str, err: str, *names: object, exit_code: int = 2) -> str:
    assert "Traceback" not in out + err, out + err
    assert code == exit_code, out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


# --- cause 7: the seed -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["-1", "4294967296", str(10**30)])
@pytest.mark.parametrize("command", ["train", "search", "data synth", "data prepare"])
def test_a_seed_out_of_range_is_one_line_before_any_work(cli: CliRunner, tiny: Path, tmp_path: Path, command: str,
                                                         seed: str) -> None:
    home, out = tmp_path / "home", tmp_path / "out"
    args: dict[str, list[object]] = {
        "train": ["train", "--data", tiny, *TRAIN, "--out", out, "--home", home],
        "search": ["search", "--data", tiny, "--study", "s", "--trials", 1, "--home", home],
        "data synth": ["data", "synth", out, "--speakers", 2, "--utterances", 2],
        "data prepare": ["data", "prepare", tmp_path, out],
    }
    code, stdout, stderr = run(cli, *args[command], "--seed", seed)
    one_line_error(code, stdout, stderr, f"--seed {seed[:30]}", "0 to 4294967295")
    assert stdout == "", "nothing ran before the check"
    assert not out.exists() and not home.exists()


def test_the_largest_seed_trains(cli: CliRunner, tiny: Path, tmp_path: Path) -> None:
    code, _, stderr = run(cli, "train", "--data", tiny, *TRAIN, "--seed", 4294967295, "--out", tmp_path / "run",
                          "--home", tmp_path / "home")
    assert code == 0, stderr
    assert json.loads((tmp_path / "run" / "config.json").read_text())


# --- cause 8: a home that is a regular file ----------------------------------------------------------------


@pytest.mark.parametrize("command", [["train", "--steps", 1], ["search", "--trials", 1], ["studies"],
                                     ["show", "--study", "s"], ["worker", "--study", "s"]],
                         ids=["train", "search", "studies", "show", "worker"])
@pytest.mark.parametrize("how", ["env", "option", "under_a_file"])
def test_a_home_that_is_a_file_is_one_line(cli: CliRunner, tiny: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch, command: list[object], how: str) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    home = notes / "sub" if how == "under_a_file" else notes
    extra: list[object] = ["--data", tiny] if command[0] in ("train", "search") else []
    if how == "option":
        code, out, err = run(cli, *command, *extra, "--home", home)
    else:
        monkeypatch.setenv("AUTOMEL_HOME", str(home))
        code, out, err = run(cli, *command, *extra)
    line = one_line_error(code, out, err, home, "not a folder")
    assert ("--home" if how == "option" else "$AUTOMEL_HOME") in line
    assert notes.read_text() == "my notes\n" and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# --- cause 11: passwords -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["show", "--study", "s"], ["export", "--study", "s"],
                                     ["refit", "--study", "s"], ["worker", "--study", "s"],
                                     ["dashboard", "--study", "s", "--port", "free"]],
                         ids=["show", "export", "refit", "worker", "dashboard"])
def test_a_storage_password_never_reaches_the_error_line(cli: CliRunner, tmp_path: Path, command: list[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = [port if part == "free" else part for part in command]
    code, out, err = run(cli, *command, "--storage", SECRET_URL, "--home", tmp_path)
    assert PASSWORD not in out + err
    line = one_line_error(code, out, err, "postgresql+psycopg://alice:***@127.0.0.1:9/studies")
    assert "cannot open storage" in line


def test_redact_masks_every_form_of_url_password() -> None:
    assert redact(f"a {SECRET_URL} b") == "a postgresql+psycopg://alice:***@127.0.0.1:9/studies b"
    assert redact("mysql://u:p/a:s@s@h/db") == "mysql://u:***@h/db"  # '/', ':' and '@' inside the password
    assert redact("postgresql://h/db?user=u&password=pw&x=1") == "postgresql://h/db?user=u&password=***&x=1"
    for plain in ("sqlite:////tmp/s.db", "journal:/tmp/s.log", "postgresql://u@h/db", "a=b"):
        assert redact(plain) == plain


def test_workers_get_the_storage_url_off_their_command_line(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    spawned: list[tuple[list[str], dict[str, str]]] = []

    class Spy:
        def __init__(self, command: list[str], env: dict[str, str], **_: Any) -> None:
            spawned.append((command, env))

    monkeypatch.setattr(subprocess, "Popen", Spy)
    from automel.engine.handle import StudyHandle

    handle = StudyHandle(tmp_path, "s", SECRET_URL)
    opened = SimpleNamespace(study=SimpleNamespace(study_name="s"), url=handle.url, handle=handle)
    options = SimpleNamespace(device="cpu", grace_period=60, timeout=None)
    parallel.launch_workers(opened, tmp_path, options, 2, tmp_path)  # type: ignore[arg-type]
    assert len(spawned) == 2
    for command, env in spawned:
        assert not any(PASSWORD in part or "postgresql" in part for part in command), command
        assert "--storage" not in command
        assert env[parallel.STORAGE_ENV] == SECRET_URL


def test_a_worker_takes_the_storage_from_its_environment(cli: CliRunner, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(parallel.STORAGE_ENV, SECRET_URL)
    code, out, err = run(cli, "worker", "--study", "s", "--home", tmp_path)
    assert PASSWORD not in out + err
    one_line_error(code, out, err, "postgresql+psycopg://alice:***@127.0.0.1:9/studies")
    assert parallel.STORAGE_ENV not in os.environ, "the worker keeps the URL out of its own children's reach"


# --- cause 13: help text -----------------------------------------------------------------------------------


def _commands() -> list[tuple[list[str], Any]]:
    found = [([info.name or ""], info) for info in app.registered_commands]
    return found + [(["data", info.name or ""], info) for info in data_cli.app.registered_commands]


def _collapse(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize(("path", "info"), _commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_help_string_is_printed_literally(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, path: list[str],
                                                info: Any) -> None:
    monkeypatch.setenv("COLUMNS", "3000")  # no wrapping: each help string is one run of text
    code, out, err = run(cli, *path, "--help")
    assert code == 0, err
    shown = _collapse(out)
    texts = [p for p in (inspect.getdoc(info.callback) or "").split("\n\n")]
    texts += [meta.default.help for meta in get_params_from_function(info.callback).values()
              if getattr(meta.default, "help", None) and not getattr(meta.default, "hidden", False)]
    for text in texts:
        assert _collapse(text) in shown, (path, text)
    brackets = [b for text in texts for b in re.findall(r"\[[^\]]*\]", text)]
    assert all(_collapse(b) in shown for b in brackets), brackets


def test_the_speaker_regex_example_can_be_pasted(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "3000")
    _, out, _ = run(cli, "data", "prepare", "--help")
    example = re.search(r"e\.g\. '([^']*)'", out)
    assert example is not None and example.group(1) == r"^\d+_([a-z]+)_\d+\.wav$"
    assert re.fullmatch(example.group(1), "17_alice_3.wav")


# --- debatable: spreadsheet formulas, stderr noise, the worker's seed, /tmp leftovers -----------------------


def test_data_check_warns_of_speaker_names_a_spreadsheet_runs(cli: CliRunner, tiny: Path, tmp_path: Path) -> None:
    data = Path(shutil.copytree(tiny, tmp_path / "data"))
    for name in ("metadata.json", "mapping.json", "answers.csv"):
        path = data / name
        path.write_text(path.read_text(encoding="utf-8").replace("id10001", "=1+2"), encoding="utf-8")
    code, out, err = run(cli, "data", "check", data)
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and "'=1+2'" in lines[0], err
    assert "formula" in lines[0] and "unchanged" in lines[0]
    assert "valid:" in out


def test_a_library_warning_is_one_clean_line(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Optuna's and matplotlib's warnings: one ``warning:`` line each, no site-packages path, no source line."""
    from automel.cli import _studies

    def noisy(home: Path, fmt: str) -> None:
        warnings.warn_explicit("Study.best_trial is noisy\n  more", UserWarning,
                               "/venv/lib/python3/site-packages/optuna/study/study.py", 123)
        warnings.warn("set_metric_names is experimental (supported from v3.2.0). The interface can change.",
                      optuna.exceptions.ExperimentalWarning, stacklevel=2)

    monkeypatch.setattr(_studies, "print_studies", noisy)
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        code, _, err = run(cli, "studies", "--home", tmp_path)
    assert code == 0, err
    assert err.strip().splitlines() == ["warning: Study.best_trial is noisy"], err


def test_a_seeded_worker_draws_the_same_parameters_each_time() -> None:
    """Workers' samplers are no longer salted with the process id: trial n draws from (seed, n) alone."""
    from automel.engine import worker

    assert inspect.signature(worker.open_worker).parameters["salt"].default is None
    assert "sampler_salt=0 if salt is None" in inspect.getsource(worker.open_worker)

    def draws() -> list[float]:
        study = optuna.create_study(sampler=TrialSeededSampler("tpe", seed=7, salt=0))
        study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=12)
        return [t.params["x"] for t in study.trials]

    assert draws() == draws()


def test_temporary_folders_of_killed_commands_are_swept(cli: CliRunner, tmp_path: Path) -> None:
    base, host = Path(tempfile.gettempdir()), socket.gethostname()
    gone = subprocess.Popen(["true"])
    gone.wait()
    dead = base / f"{PREFIX}{gone.pid}@{host}.test"
    live = base / f"{PREFIX}{os.getpid()}@{host}.test"
    elsewhere = base / f"{PREFIX}{gone.pid}@another-host.test"
    for folder in (dead, live, elsewhere):
        (folder / "upload").mkdir(parents=True)
        (folder / "upload" / "model.safetensors").write_bytes(b"x")
    try:
        code, _, err = run(cli, "studies", "--home", tmp_path)
        assert code == 0, err
        assert not dead.exists(), "a killed process's upload folder was left"
        assert live.exists() and elsewhere.exists(), "a live process's or another machine's folder was removed"
        mine = [p for p in base.iterdir() if p.name.startswith(f"{PREFIX}{os.getpid()}@") and p != live]
        assert mine == [], "the command left its own scratch folder"
        assert sweep_scratch(base) == []
    finally:
        for folder in (dead, live, elsewhere):
            shutil.rmtree(folder, ignore_errors=True)


def test_a_command_s_temporary_files_go_to_its_scratch_folder(cli: CliRunner, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from automel.cli import _studies

    seen: list[str] = []
    monkeypatch.setattr(_studies, "print_studies", lambda home, fmt: seen.append(tempfile.mkdtemp()))
    code, _, err = run(cli, "studies", "--home", tmp_path)
    assert code == 0, err
    assert Path(seen[0]).parent.name.startswith(f"{PREFIX}{os.getpid()}@")
    assert not Path(seen[0]).exists(), "the scratch folder goes with the command"
    assert oct(Path(tempfile.gettempdir()).stat().st_mode)  # tempfile's folder is restored
    assert not tempfile.gettempdir().startswith(str(Path(seen[0]).parent))
