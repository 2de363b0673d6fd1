"""Several workers on one study, as real processes, on SQLite (WAL), a journal file and PostgreSQL.

Each storage gets the same two checks: ``search --workers 3`` ends with exactly the target count of
finished trials and one export; a worker killed with SIGKILL mid-trial leaves a trial that another worker
fails and retries, and the study still completes with nothing lost or duplicated. On PostgreSQL (the
several-machines case) a standalone ``automel worker`` joins a running search; on SQLite, a worker
refuses a data set with another fingerprint and bad options.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from automel.engine.parallel import usable_cores
from automel.engine.search import is_surplus
from automel.engine.study import open_storage

# Wall-clock limits, signals and several processes: run alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

FAST = ["--steps-per-trial", "20", "--encoders", "transformer", "--poolings", "mean", "--heads", "softmax",
        "--device", "cpu", "--pruner", "none", "--grace-period", "6", "--no-refit", "--quality", "fast"]


@pytest.fixture(params=["sqlite", "journal", "postgresql"])
def storage_url(request: pytest.FixtureRequest, isolated_home: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{isolated_home / 'shared.db'}"
    if request.param == "journal":
        return f"journal:{isolated_home / 'shared.log'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def study_name(request: pytest.FixtureRequest) -> str:
    # PostgreSQL is shared by the whole session: every test takes a study name of its own.
    return "w-" + request.node.name.replace("[", "-").replace("]", "").lower()


def automel(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AUTOMEL_HOME": str(home), "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "automel", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str], timeout: float = 600) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False))


def assert_complete_and_distinct(study: optuna.Study, target: int) -> None:
    """Exactly ``target`` finished trials, none running, and no parameter set trained twice successfully."""
    trials = study.get_trials(deepcopy=False)
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == target, [(t.number, t.state.name) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert len({t.number for t in trials}) == len(trials)
    params = [json.dumps(t.params, sort_keys=True) for t in finished]
    assert len(set(params)) == len(params), "two finished trials share their parameters"
    # A failure is either a surplus start (the target was already covered) or a dead worker's trial that
    # was retried; anything else is a lost trial.
    retried = _retried(trials)
    unexplained = [(t.number, t.user_attrs.get("fail_reason"), t.user_attrs.get("worker")) for t in trials
                   if t.state == TrialState.FAIL and not is_surplus(t) and t.number not in retried]
    assert not unexplained, f"failed trials that were neither surplus nor retried: {unexplained}"


def _retried(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    return {int(t.system_attrs["failed_trial"]) for t in trials if "failed_trial" in t.system_attrs}


def test_three_workers_reach_exactly_the_target(hw4_sample: Path, isolated_home: Path, storage_url: str,
                                                study_name: str) -> None:
    code, out, err = finish(automel(isolated_home, "search", "--study", study_name, "--storage", storage_url,
                                    "--data", str(hw4_sample), "--trials", "7", "--workers", "3", *FAST))
    assert code == 0, err
    study = load(storage_url, study_name)
    assert_complete_and_distinct(study, 7)
    workers = {t.user_attrs["worker"] for t in study.trials if "worker" in t.user_attrs}
    assert len(workers) >= 2, f"the trials ran in one process only: {workers}"
    assert "database is locked" not in err + out
    logs = sorted((isolated_home / study_name / "logs").glob("worker-*.log"))
    assert len(logs) == min(3, usable_cores())  # on a CPU, one worker a core (issue 22)
    assert not any("database is locked" in p.read_text() for p in logs)
    export = json.loads((isolated_home / study_name / "best" / "export.json").read_text())
    assert export["trial"] == study.best_trial.number
    assert "best trial" in out


# The journal's heartbeat path is tested on its own (test_shared_storage); a killed worker on SQLite and PostgreSQL.
@pytest.mark.parametrize("storage_url", ["sqlite", "postgresql"], indirect=True)
def test_a_killed_worker_s_trial_is_failed_and_retried(hw4_sample: Path, isolated_home: Path, storage_url: str,
                                                       study_name: str) -> None:
    proc = automel(isolated_home, "search", "--study", study_name, "--storage", storage_url, "--data",
                   str(hw4_sample), "--trials", "3", "--workers", "2", *FAST, "--steps-per-trial", "160")
    victim = wait_for_reporting_trial(storage_url, study_name, proc)
    _host, pid = victim.user_attrs["worker"].rsplit(":", 1)
    os.kill(int(pid), signal.SIGKILL)
    code, _, err = finish(proc)
    assert code == 0, err
    assert "exited -9" in err  # the parent names the worker that died
    study = load(storage_url, study_name)
    assert study.trials[victim.number].state == TrialState.FAIL
    retries = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert len(retries) == 1 and retries[0].params == victim.params
    assert retries[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert_complete_and_distinct(study, 3)


def wait_for_reporting_trial(url: str, name: str, proc: subprocess.Popen[str], timeout: float = 180
                             ) -> optuna.trial.FrozenTrial:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            running = load(url, name).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        except (KeyError, Exception):  # the study may not exist yet
            running = []
        reporting = [t for t in running if t.intermediate_values and "worker" in t.user_attrs]
        if reporting:
            return reporting[0]
        time.sleep(0.3)
    raise AssertionError("no trial reported in time")


@pytest.mark.parametrize("storage_url", ["postgresql"], indirect=True)  # the several-machines case
def test_a_worker_joins_a_running_search(hw4_sample: Path, isolated_home: Path, storage_url: str,
                                         study_name: str) -> None:
    search = automel(isolated_home, "search", "--study", study_name, "--storage", storage_url, "--data",
                     str(hw4_sample), "--trials", "5", *FAST, "--steps-per-trial", "60")
    wait_for_reporting_trial(storage_url, study_name, search)
    joined = automel(isolated_home, "worker", "--study", study_name, "--storage", storage_url, "--device", "cpu")
    code, out, err = finish(joined)
    assert code == 0, err
    assert "joined study" in out
    code, _, err = finish(search)
    assert code == 0, err
    study = load(storage_url, study_name)
    assert_complete_and_distinct(study, 5)
    workers = {t.user_attrs["worker"] for t in study.trials if "worker" in t.user_attrs}
    assert len(workers) == 2, workers
    assert (isolated_home / study_name / "best" / "output.csv").exists()


@pytest.mark.parametrize("storage_url", ["sqlite"], indirect=True)
def test_worker_checks_the_data_set_and_the_study(hw4_sample: Path, isolated_home: Path, tmp_path: Path,
                                                  storage_url: str, study_name: str) -> None:
    code, _, err = finish(automel(isolated_home, "search", "--study", study_name, "--storage", storage_url,
                                  "--data", str(hw4_sample), "--trials", "1", *FAST))
    assert code == 0, err
    before = len(load(storage_url, study_name).trials)

    copy = tmp_path / "copy"  # the same data at another path, with other file times: accepted
    shutil.copytree(hw4_sample, copy)
    code, out, err = finish(automel(isolated_home, "worker", "--study", study_name, "--storage", storage_url,
                                    "--data", str(copy)))
    assert code == 0, err
    assert "0 trials finished here" in out  # the study already holds its target

    changed = tmp_path / "changed"
    shutil.copytree(hw4_sample, changed)
    first = sorted(changed.glob("uttr-*.pt"))[0]
    import torch

    torch.save(torch.load(first, weights_only=True) + 1.0, first)
    code, _, err = finish(automel(isolated_home, "worker", "--study", study_name, "--storage", storage_url,
                                  "--data", str(changed)))
    assert code == 2 and "fingerprint" in err and str(changed) in err
    assert len(err.strip().splitlines()) == 1

    for args, expected in ((["--study", "nope"], "no study 'nope'"),
                           (["--study", study_name, "--storage", "journal:" + str(tmp_path)], "needs a file path"),
                           (["--study", study_name, "--device", "tpu"], "tpu")):
        code, _, err = finish(automel(isolated_home, "worker", "--storage", storage_url, *args)
                              if "--storage" not in args else automel(isolated_home, "worker", *args))
        assert code != 0 and expected in err, (args, err)
    assert len(load(storage_url, study_name).trials) == before  # nothing ran, nothing was written


@pytest.mark.parametrize("storage_url", ["journal"], indirect=True)
def test_the_time_limit_reaches_the_workers(hw4_sample: Path, isolated_home: Path, storage_url: str,
                                            study_name: str) -> None:
    import datetime

    started = datetime.datetime.now()
    code, out, err = finish(automel(isolated_home, "search", "--study", study_name, "--storage", storage_url,
                                    "--data", str(hw4_sample), "--trials", "50", "--workers", "2",
                                    "--time-limit", "30s", *FAST))
    assert code == 0, err
    finished = [t for t in load(storage_url, study_name).trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 1 <= len(finished) < 50, "the time limit, not the target, ends the search"
    # the workers stop within the limit (without a refit the search has all of it but the export's reserve)
    last = max(t.datetime_complete for t in finished if t.datetime_complete is not None)
    assert (last - started).total_seconds() <= 30 + 5
    assert "exported" in out
