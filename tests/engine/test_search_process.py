"""A search as a real process: SIGKILL mid-trial then resume, SIGINT, and the dashboard over HTTP."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from automel.engine.handle import StudyHandle
from automel.engine.study import open_storage

# Wall-clock limits, signals and several processes: run alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

SEARCH = ["search", "--study", "proc", "--steps-per-trial", "200", "--encoders", "transformer", "--poolings", "mean",
          "--heads", "softmax", "--device", "cpu", "--pruner", "none", "--grace-period", "3", "--no-refit",
          "--quality", "fast"]


def automel(home: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "AUTOMEL_HOME": str(home), "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "automel", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def load(home: Path) -> optuna.Study:
    return optuna.load_study(study_name="proc", storage=open_storage(StudyHandle(home, "proc").url, heartbeat=False))


def running_with_a_report(db: Path) -> bool:
    """Read-only look (plain sqlite3, no table creation) for a RUNNING trial with a reported value."""
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT COUNT(*) FROM trials t JOIN trial_intermediate_values v "
                               "ON v.trial_id = t.trial_id WHERE t.state = 'RUNNING'").fetchone()
    except sqlite3.Error:
        return False
    return bool(row and row[0])


def wait_for_running(home: Path, proc: subprocess.Popen[str], timeout: float = 120) -> optuna.trial.FrozenTrial:
    """Wait until a trial is RUNNING and has reported at least one validation step."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if running_with_a_report(home / "proc.db"):
            running = load(home).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if running and running[0].intermediate_values:
                return running[0]
        time.sleep(0.3)
    raise AssertionError("no trial started in time")


def test_sigkill_mid_trial_then_resume(hw4_sample: Path, isolated_home: Path) -> None:
    proc = automel(isolated_home, *SEARCH, "--data", str(hw4_sample), "--trials", "2")
    victim = wait_for_running(isolated_home, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert load(isolated_home).trials[victim.number].state == TrialState.RUNNING
    time.sleep(4)  # longer than --grace-period: the dead process's trial is now stale
    resumed = automel(isolated_home, *SEARCH, "--data", str(hw4_sample), "--trials", "2")
    _, stderr = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, stderr
    study = load(isolated_home)
    assert not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    assert study.trials[victim.number].state == TrialState.FAIL
    retried = [t for t in study.trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retried and retried[0].params == victim.params
    assert len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))) == 2


def test_sigint_exits_130_with_consistent_study(hw4_sample: Path, isolated_home: Path) -> None:
    proc = automel(isolated_home, *SEARCH, "--data", str(hw4_sample), "--trials", "3")
    victim = wait_for_running(isolated_home, proc)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "resume" in stderr
    study = load(isolated_home)
    assert not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    trial = study.trials[victim.number]
    assert trial.state == TrialState.FAIL and "Ctrl-C" in trial.user_attrs["fail_reason"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_dashboard_serves_the_study_on_loopback(hw4_sample: Path, isolated_home: Path) -> None:
    done = automel(isolated_home, *SEARCH, "--data", str(hw4_sample), "--trials", "1", "--steps-per-trial", "20")
    _, stderr = done.communicate(timeout=300)
    assert done.returncode == 0, stderr
    port = free_port()
    server = automel(isolated_home, "dashboard", "--study", "proc", "--port", str(port))
    try:
        deadline, body = time.monotonic() + 60, None
        while time.monotonic() < deadline and body is None:
            assert server.poll() is None, server.communicate()[1]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    body = json.loads(response.read())
            except OSError:
                time.sleep(0.5)
        assert body is not None, "dashboard did not answer"
        assert [s["study_name"] for s in body["study_summaries"]] == ["proc"]
        study_id = body["study_summaries"][0]["study_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study_id}?after=0", timeout=10) as r:
            detail = json.loads(r.read())
        trial = detail["trials"][0]
        names = sorted(a["filename"] for a in trial["artifacts"])
        assert names == ["config.json", "model.safetensors"]
        # the artifact store is attached: the weights download through the dashboard
        artifact = next(a for a in trial["artifacts"] if a["filename"] == "model.safetensors")
        url = f"http://127.0.0.1:{port}/artifacts/{study_id}/{trial['trial_id']}/{artifact['artifact_id']}"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert len(r.read()) > 1000
    finally:
        server.terminate()
        server.wait(timeout=30)

