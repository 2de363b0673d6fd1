"""Studies stay where they belong and never repeat each other's work (issue 13, items 6, 11 and 12).

- A study name becomes ``<home>/<name>.db`` and ``<home>/<name>/``: names that would leave the home are refused
  by every command and by the library.
- A SQLite or journal ``--storage`` in a folder that does not exist is a typo, not a new study; ``--create-dirs``
  creates the folder. The home's own default storage is created as before.
- Two processes on one study draw different parameters; one seeded process run twice draws the same ones.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from typer.testing import CliRunner

from automel.engine.handle import StudyHandle
from automel.engine.search import SearchOptions, attach_study, open_search
from automel.engine.study import SAMPLERS, open_storage, study_name_for
from automel.engine.worker import open_worker
from automel.errors import ConfigError, StudyError
from automel.home import MAX_STUDY_NAME, check_study_name
from automel.train.fit import open_workspace
from tests.conftest import run

# The tiniest search the engine runs: one small model family, ten steps, no pruning, no refit.
TINY = ["--steps-per-trial", "10", "--encoders", "transformer", "--poolings", "mean", "--heads", "softmax",
        "--device", "cpu", "--pruner", "none", "--no-portfolio", "--no-refit", "--quality", "fast"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic data set (4 speakers), made once for the module."""
    data = tmp_path_factory.mktemp("corpus") / "syn"
    code, _, stderr = run(CliRunner(), "data", "synth", data, "--speakers", 4, "--utterances", 8, "--seed", 2,
                          "--test-per-speaker", 2)
    assert code == 0, stderr
    return data


def one_line_error(code: int, stderr: str, *named: str) -> None:
    assert code == 2, stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert "Traceback" not in stderr
    for value in named:
        assert value in stderr, (value, stderr)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def params_of(study: optuna.Study) -> list[tuple[tuple[str, object], ...]]:
    return [tuple(sorted(t.params.items())) for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)]


# --- item 6: study names stay inside the home -------------------------------------------------------------------

ESCAPES = ["../../escape", "sub/dir", ".hidden", "..", "-rf", "a b", "x" * (MAX_STUDY_NAME + 1)]


@pytest.mark.parametrize("name", ESCAPES)
def test_search_refuses_a_study_name_that_leaves_the_home(cli: CliRunner, corpus: Path, isolated_home: Path,
                                                          name: str) -> None:
    code, _, stderr = run(cli, "search", "--data", corpus, "--study", name, "--trials", 1, *TINY)
    one_line_error(code, stderr, "invalid study name", name[:40])
    assert not list(isolated_home.rglob("*.db"))
    assert not (isolated_home / "../../escape.db").exists() and not (isolated_home / "../../escape").exists()


def test_search_refuses_an_absolute_study_name(cli: CliRunner, corpus: Path, isolated_home: Path,
                                               tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    code, _, stderr = run(cli, "search", "--data", corpus, "--study", outside / "abs", "--trials", 1, *TINY)
    one_line_error(code, stderr, "invalid study name", str(outside / "abs"))
    assert not list(outside.iterdir()) and not list(isolated_home.rglob("*.db"))


@pytest.mark.parametrize("command", ["worker", "export", "refit", "show", "dashboard"])
def test_every_command_refuses_a_study_name_that_leaves_the_home(cli: CliRunner, isolated_home: Path,
                                                                 tmp_path: Path, command: str) -> None:
    extra = ["--port", free_port()] if command == "dashboard" else []  # it tries its port first
    for name in ("../../escape", str(tmp_path / "abs")):
        code, _, stderr = run(cli, command, "--study", name, *extra)
        one_line_error(code, stderr, "invalid study name", name)
    assert not list(tmp_path.iterdir()) and not list(isolated_home.rglob("*.db"))
    assert not (isolated_home / "../../escape.db").exists()


def test_library_refuses_a_study_name_that_leaves_the_home(corpus: Path, isolated_home: Path,
                                                           tmp_path: Path) -> None:
    name = str(tmp_path / "abs")
    for call in (lambda: StudyHandle(isolated_home, name).url, lambda: StudyHandle(isolated_home, name).artifacts,
                 lambda: StudyHandle.find(isolated_home, name, None).load(),
                 lambda: StudyHandle.find(isolated_home, "../escape", f"sqlite:///{isolated_home / 'x.db'}").load(),
                 lambda: open_search(corpus, isolated_home, SearchOptions(study=name, device="cpu")),
                 lambda: attach_study(f"sqlite:///{isolated_home / 'x.db'}", name, SearchOptions(), 10, create=True),
                 lambda: open_worker(isolated_home, name, f"sqlite:///{isolated_home / 'x.db'}", device="cpu")):
        with pytest.raises(ConfigError, match="invalid study name"):
            call()
    assert not list(tmp_path.iterdir()) and not list(isolated_home.rglob("*.db"))


def test_study_names_derived_from_data_sets_are_valid() -> None:
    for dataset in ("HW4 sample", "..hidden", "-x-", "ünïcode", "", "a" * 300, "x." + "." * 200):
        assert check_study_name(study_name_for(dataset))


# --- item 12: a storage in a missing folder is a typo -----------------------------------------------------------

@pytest.mark.parametrize("scheme", ["sqlite:///", "journal:"])
def test_search_refuses_a_storage_in_a_missing_folder(cli: CliRunner, corpus: Path, isolated_home: Path,
                                                      tmp_path: Path, scheme: str) -> None:
    folder = tmp_path / "nonexistent-dir" / "sub"
    url = f"{scheme}{folder / 'x.db'}"
    code, _, stderr = run(cli, "search", "--data", corpus, "--study", "typo", "--storage", url, "--trials", 1, *TINY)
    one_line_error(code, stderr, f"folder {folder} does not exist", "--create-dirs")
    assert not (tmp_path / "nonexistent-dir").exists()
    assert not list(isolated_home.rglob("*.db"))  # no study anywhere


@pytest.mark.parametrize("command", ["worker", "export", "show"])
def test_other_commands_refuse_a_storage_in_a_missing_folder(cli: CliRunner, tmp_path: Path, command: str) -> None:
    folder = tmp_path / "nonexistent-dir" / "sub"
    code, _, stderr = run(cli, command, "--study", "typo", "--storage", f"sqlite:///{folder / 'x.db'}")
    one_line_error(code, stderr, f"folder {folder} does not exist")
    assert not (tmp_path / "nonexistent-dir").exists()


@pytest.mark.parametrize("scheme", ["sqlite:///", "journal:"])
def test_create_dirs_creates_the_storage_folder(cli: CliRunner, corpus: Path, tmp_path: Path, scheme: str) -> None:
    url = f"{scheme}{tmp_path / 'new' / 'sub' / 'x.db'}"
    code, _, stderr = run(cli, "search", "--data", corpus, "--study", "made", "--storage", url, "--create-dirs",
                          "--trials", 1, *TINY)
    assert code == 0, stderr
    study = optuna.load_study(study_name="made", storage=open_storage(url, heartbeat=False))
    assert len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))) == 1


def test_the_homes_default_storage_is_still_created(tmp_path: Path) -> None:
    home = tmp_path / "not" / "yet"
    url = StudyHandle(home, "fresh").url
    study = attach_study(url, "fresh", SearchOptions(), 10, create=True)  # no --storage: the home's own
    assert study.study_name == "fresh" and (home / "fresh.db").is_file()
    with pytest.raises(StudyError, match=f"folder {tmp_path / 'other'} does not exist"):
        attach_study(StudyHandle(tmp_path / "other", "s").url, "s", SearchOptions(storage="explicit"), 10, True)


# --- item 11: processes sharing a study draw different parameters -----------------------------------------------

def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    layers = trial.suggest_int("layers", 1, 8)
    head = trial.suggest_categorical("head", ["softmax", "am-softmax", "aam-softmax"])
    return x + layers / 8 + (head == "softmax") - abs(lr - 1e-3)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_two_processes_on_one_study_draw_different_parameters(tmp_path: Path, sampler: str) -> None:
    if sampler == "cmaes":
        pytest.importorskip("cmaes", reason="Optuna's CMA-ES sampler needs the 'cmaes' package, not installed")
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    options = SearchOptions(sampler=sampler, seed=3, storage=url)
    # Two "processes": each attaches with its own sampler before either has run a trial, as two terminals
    # started together do; then they take turns. Seeded from the trial count, both would walk one stream.
    first, second = (attach_study(url, "shared", options, 10, create=True) for _ in range(2))
    for _ in range(5):
        first.optimize(_objective, n_trials=1)
        second.optimize(_objective, n_trials=1)
    drawn = params_of(first)
    assert len(drawn) == 10 and len(set(drawn)) == 10, drawn


@pytest.mark.parametrize("sampler", ["tpe", "random"])
def test_one_seeded_process_draws_the_same_parameters_each_time(tmp_path: Path, sampler: str) -> None:
    def fresh(folder: str, seed: int) -> list[tuple[tuple[str, object], ...]]:
        url = f"sqlite:///{tmp_path / folder / 's.db'}"
        study = attach_study(url, "s", SearchOptions(sampler=sampler, seed=seed), 10, create=True)
        study.optimize(_objective, n_trials=10)  # past TPE's 8 random start-up trials
        return params_of(study)

    assert fresh("a", 7) == fresh("b", 7)
    assert fresh("c", 8) != fresh("a", 7)


def test_a_seeded_search_repeats_through_the_cli(cli: CliRunner, corpus: Path, tmp_path: Path) -> None:
    drawn = []
    for home in ("one", "two"):
        args = ["search", "--data", corpus, "--study", "again", "--seed", 5, "--trials", 2, *TINY]
        code, _, stderr = run(cli, *args, "--home", tmp_path / home)
        assert code == 0, stderr
        drawn.append(params_of(StudyHandle.find(tmp_path / home, "again", None).load()))
    assert len(drawn[0]) == 2 and drawn[0] == drawn[1]


def test_two_search_processes_on_one_study_never_repeat_a_trial(corpus: Path, isolated_home: Path) -> None:
    open_workspace(corpus, isolated_home)  # the feature cache, built once before the two processes start
    env = {**os.environ, "AUTOMEL_HOME": str(isolated_home), "COLUMNS": "200"}
    command = [sys.executable, "-m", "automel", "search", "--data", str(corpus), "--study", "two", "--trials", "4",
               "--seed", "0", *TINY]
    processes = [subprocess.Popen(command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr
    drawn = params_of(StudyHandle.find(isolated_home, "two", None).load())
    assert len(drawn) >= 4
    assert all(a != b for a, b in itertools.combinations(drawn, 2)), drawn
