"""The study's typed record, and the runner's decisions (next action, a trial taken over by another worker)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from automel.engine.record import DatasetRef, EngineRecord, StudyRecord
from automel.engine.search import Action, SearchOptions, SearchOutcome, next_action, open_search, run_trials
from automel.engine.space import SearchSpace
from automel.engine.study import open_storage
from automel.errors import StudyError

TINY = SearchOptions(trials=2, steps_per_trial=10, encoders=["transformer"], poolings=["mean"], heads=["softmax"],
                     device="cpu", pruner="none", portfolio=False, study="r")


def record(steps: int = 90) -> StudyRecord:
    return StudyRecord(space=SearchSpace(("transformer",), ("mean",), ("softmax",)),
                       dataset=DatasetRef("/data/x", "x", "real"), content_id="abc", split={"seed": 0, "valid": []},
                       steps_per_trial=steps, scale="cpu", engine=EngineRecord(10, "tpe", "asha", 0, 5))


def test_the_record_round_trips_and_keeps_the_old_attribute_names() -> None:
    study = optuna.create_study(direction="maximize")
    record().write(study)
    assert StudyRecord.read(study) == record()
    assert study.user_attrs["dataset_fingerprint"] == "abc"  # the key earlier versions wrote
    # the engine may change with each command; the frozen fields may not
    changed = StudyRecord(**{**record().__dict__, "engine": EngineRecord(20, "random", "median", 1, 3)})
    changed.write(study)
    assert StudyRecord.read(study).engine.target == 20
    with pytest.raises(StudyError, match="steps_per_trial"):
        record(steps=45).write(study)


def test_a_study_not_made_by_search_is_refused_naming_what_it_lacks() -> None:
    study = optuna.create_study(study_name="bare")
    with pytest.raises(StudyError, match=r"study 'bare' was not created by `automel search`.*space"):
        StudyRecord.read(study)


def test_next_action() -> None:
    study = optuna.create_study(direction="maximize")
    outcome = SearchOutcome(study)
    assert next_action(study, TINY, outcome, None) is Action.RUN
    # past the deadline a first trial still runs (with none, nothing could be exported), but no second one
    assert next_action(study, TINY, outcome, time.monotonic() - 1) is Action.RUN
    running = study.ask()
    study.tell(study.ask(), 0.5)
    assert next_action(study, TINY, outcome, time.monotonic() - 1) is Action.STOP
    assert next_action(study, TINY, outcome, None) is Action.WAIT  # one finished + one running = the target
    study.tell(running, 0.4)
    assert next_action(study, TINY, outcome, None) is Action.STOP


def test_a_trial_taken_over_by_another_worker_does_not_count(hw4_sample: Path, isolated_home: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    opened = open_search(hw4_sample, isolated_home, TINY)
    real = optuna.Study.optimize
    calls: list[int] = []

    def taken_over_once(self: optuna.Study, *args: object, **kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 1:  # what Optuna raises when it tells a trial another worker already failed
            raise ValueError("Cannot tell a COMPLETE trial.")
        real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(optuna.Study, "optimize", taken_over_once)
    outcome = run_trials(opened, isolated_home, TINY)
    assert outcome.counts["finished"] == 2 and len(calls) == 3 and outcome.finished_here == 2

    def broken(self: optuna.Study, *args: object, **kwargs: object) -> None:
        raise ValueError("something else")

    monkeypatch.setattr(optuna.Study, "optimize", broken)
    with pytest.raises(ValueError, match="something else"):
        run_trials(opened, isolated_home, SearchOptions(**{**TINY.__dict__, "trials": 3}))


@pytest.mark.parametrize("race", ["(sqlite3.IntegrityError) UNIQUE constraint failed: alembic_version.version_num",
                                  "(psycopg.errors.UniqueViolation) duplicate key value violates unique constraint",
                                  "table studies already exists"])
def test_a_database_two_processes_create_at_once_opens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       race: str) -> None:
    import optuna.storages

    real, calls = optuna.storages.RDBStorage, list[int]()

    def racing(*args: Any, **kwargs: Any) -> optuna.storages.RDBStorage:
        calls.append(1)
        if len(calls) == 1:  # the other process inserted the schema between our look and our insert
            raise RuntimeError(race)
        return real(*args, **kwargs)

    monkeypatch.setattr(optuna.storages, "RDBStorage", racing)
    storage = open_storage(f"sqlite:///{tmp_path / 'race.db'}", heartbeat=False)
    assert len(calls) == 2 and storage.get_all_studies() == []


def test_a_database_that_fails_otherwise_is_not_retried(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import optuna.storages

    calls: list[int] = []

    def broken(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        raise RuntimeError("(sqlite3.DatabaseError) file is not a database")

    monkeypatch.setattr(optuna.storages, "RDBStorage", broken)
    with pytest.raises(StudyError, match=r"cannot open storage .*race\.db: .*file is not a database"):
        open_storage(f"sqlite:///{tmp_path / 'race.db'}", heartbeat=False)
    assert len(calls) == 1
