"""The pieces of shared studies, in process: journal heartbeats, device plans, the exact target, one export."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from automel.engine.counting import covered_ahead, is_surplus, state_counts
from automel.engine.journal import HEARTBEAT_ATTR, HeartbeatJournalStorage
from automel.engine.parallel import plan_devices, threads_per_worker
from automel.engine.study import open_storage
from automel.errors import StudyError

# Wall-clock limits, signals and several processes: run alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial


def test_journal_url_opens_a_heartbeat_journal(tmp_path: Path) -> None:
    storage = open_storage(f"journal:{tmp_path / 'sub' / 's.log'}", grace_period=6, create_dirs=True)
    assert isinstance(storage, HeartbeatJournalStorage)
    assert storage.get_heartbeat_interval() == 2 and (tmp_path / "sub").is_dir()
    with pytest.raises(StudyError, match="needs a file path"):
        open_storage(f"journal:{tmp_path}")


def test_corrupt_journal_is_a_clear_error(tmp_path: Path) -> None:
    log = tmp_path / "bad.log"
    log.write_text("this is not a journal\n")
    with pytest.raises(StudyError, match=f"cannot open storage journal:{log}: not a readable Optuna journal"):
        open_storage(f"journal:{log}")
    assert log.read_text() == "this is not a journal\n"  # never rewritten


def test_journal_heartbeat_fails_a_silent_trial_and_queues_its_retry(tmp_path: Path) -> None:
    storage = open_storage(f"journal:{tmp_path / 's.log'}", grace_period=2)
    study = optuna.create_study(storage=storage, study_name="s")
    alive, dead = study.ask(), study.ask()
    dead.suggest_float("x", 0, 1)
    assert isinstance(storage, HeartbeatJournalStorage)
    storage.record_heartbeat(alive._trial_id)
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)
    storage.record_heartbeat(alive._trial_id)  # only this one is still beating
    optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    assert trials[alive.number].state == TrialState.RUNNING
    assert trials[dead.number].state == TrialState.FAIL
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING and retry[0].params == trials[dead.number].params
    assert HEARTBEAT_ATTR in trials[alive.number].system_attrs
    storage.record_heartbeat(dead._trial_id)  # a late beat from the "dead" worker is harmless


def test_postgres_url_without_driver_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_psycopg(name: str, *args: object, **kwargs: object) -> object:
        if name == "psycopg":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_psycopg)
    with pytest.raises(StudyError, match=r"automel\[postgres\]"):
        open_storage("postgresql+psycopg://u@127.0.0.1:1/db")


@pytest.mark.parametrize(("device", "workers", "gpus", "expected"), [
    ("auto", 3, 2, ["cuda:0", "cuda:1", "cuda:0"]),
    ("cuda", 2, 4, ["cuda:0", "cuda:1"]),
    ("cuda:1", 2, 4, ["cuda:1", "cuda:1"]),  # a named device is respected
    ("auto", 2, 1, ["auto", "auto"]),  # one GPU: the workers share it
    ("cpu", 2, 0, ["cpu", "cpu"]),
])
def test_plan_devices(device: str, workers: int, gpus: int, expected: list[str]) -> None:
    assert plan_devices(device, workers, gpus) == expected


def test_threads_are_divided_between_workers() -> None:
    assert [threads_per_worker(n, cores=8) for n in (1, 2, 3, 4, 16)] == [8, 4, 2, 2, 1]


def test_trials_ahead_decide_the_surplus(tmp_path: Path) -> None:
    study = optuna.create_study(storage=open_storage(f"sqlite:///{tmp_path / 's.db'}", heartbeat=False))
    for value in (0.1, 0.2):
        study.tell(study.ask(), value)
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    running = study.ask()
    mine = study.ask()
    assert covered_ahead(study, mine.number) == 3  # two complete + one running; the failure does not count
    assert covered_ahead(study, running.number) == 2
    mine.set_user_attr("surplus", True)
    study.tell(mine, state=TrialState.FAIL)
    counts = state_counts(study)
    assert counts["skipped"] == 1 and counts["fail"] == 1 and counts["finished"] == 2 and counts["running"] == 1
    assert is_surplus(study.trials[mine.number]) and not is_surplus(study.trials[failed.number])


def test_two_exports_at_once_write_one_valid_export(hw4_sample: Path, isolated_home: Path, cli: object) -> None:
    from tests.conftest import run

    code, _, err = run(cli, "search", "--data", hw4_sample, "--study", "x", "--trials", "2", "--steps-per-trial", "20",
                       "--encoders", "transformer", "--poolings", "mean", "--heads", "softmax", "--pruner", "none",
                       "--no-refit", "--quality", "fast")
    assert code == 0, err
    from automel.engine.finish.write import export_best
    from automel.engine.handle import StudyHandle

    study = StudyHandle.find(isolated_home, "x", None).load()
    export = isolated_home / "x" / "best"
    (export / "export.json").unlink()  # as if the search had not exported yet
    results: list[bool] = []
    handle = StudyHandle.of(study, isolated_home)
    threads = [threading.Thread(target=lambda: results.append(export_best(handle, study)[0] is not None))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, True]  # exactly one wrote it
    info = json.loads((export / "export.json").read_text())
    assert info["trial"] == study.best_trial.number
    assert (export / "output.csv").exists() and (export / "model.safetensors").exists()
    assert not [p for p in export.parent.iterdir() if p.name.startswith(".best")]  # no temporary folders left


def test_a_study_from_before_content_ids_resumes_and_exports(hw4_sample: Path, isolated_home: Path,
                                                             cli: object) -> None:
    from automel.data.store import fingerprint_dataset
    from automel.engine.handle import StudyHandle
    from tests.conftest import run

    args = ["search", "--data", hw4_sample, "--study", "old", "--steps-per-trial", "20", "--encoders", "transformer",
            "--poolings", "mean", "--heads", "softmax", "--pruner", "none", "--no-refit", "--quality", "fast"]
    assert run(cli, *args, "--trials", "1")[0] == 0
    study = StudyHandle.find(isolated_home, "old", None).load()
    content_id = study.user_attrs["dataset_fingerprint"]
    study.set_user_attr("dataset_fingerprint", fingerprint_dataset(hw4_sample, version=1))  # as version 0.1 wrote it
    code, _, err = run(cli, "export", "--study", "old", "--out", isolated_home / "exported")
    assert code == 0, err
    assert StudyHandle.find(isolated_home, "old", None).load().user_attrs["dataset_fingerprint"] == content_id
    code, _, err = run(cli, *args, "--trials", "2")
    assert code == 0, err
    assert len(StudyHandle.find(isolated_home, "old", None).load().trials) == 2
