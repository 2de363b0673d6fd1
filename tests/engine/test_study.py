"""Opening a study's storage and its sampler and pruner (automel/engine/study.py)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from automel.engine.study import (
    PRUNERS,
    SAMPLERS,
    make_pruner,
    make_sampler,
    open_storage,
    rung_steps,
    storage_file,
    study_name_for,
    trial_seed,
)
from automel.errors import ConfigError, StudyError


def test_a_data_set_name_gives_a_valid_study_name() -> None:
    assert study_name_for("HW4 Sample (v2)") == "hw4-sample-v2"
    assert study_name_for("...") == "study" and len(study_name_for("x" * 500)) == 100


def test_storage_urls_name_their_files(tmp_path: Path) -> None:
    assert storage_file(f"sqlite:///{tmp_path / 's.db'}") == tmp_path / "s.db"
    assert storage_file(f"journal:{tmp_path / 'j.log'}") == tmp_path / "j.log"
    assert storage_file("sqlite:///:memory:") is None and storage_file("journal:") is None
    assert storage_file("postgresql+psycopg://u:p@h/db") is None


def test_a_storage_that_is_no_study_database_is_one_line_and_left_alone(tmp_path: Path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("my notes")
    with pytest.raises(StudyError, match=r"cannot open storage .*notes.db: .*file is not a database"):
        open_storage(f"sqlite:///{text}")
    assert text.read_text() == "my notes"
    with pytest.raises(StudyError, match=r"folder .* does not exist"):
        open_storage(f"sqlite:///{tmp_path / 'typo' / 's.db'}")
    assert not (tmp_path / "typo").exists()


def test_every_sampler_and_pruner_is_made_and_a_wrong_name_is_named() -> None:
    for name in SAMPLERS:
        assert isinstance(make_sampler(name, 0), optuna.samplers.BaseSampler)
    for name in PRUNERS:
        assert isinstance(make_pruner(name, 90), optuna.pruners.BasePruner)
    with pytest.raises(ConfigError, match="`sampler` 'bayes' is unknown"):
        make_sampler("bayes", 0)
    with pytest.raises(ConfigError, match="`pruner` 'early' is unknown"):
        make_pruner("early", 90)


def test_rungs_and_trial_seeds() -> None:
    assert rung_steps(90) == [30, 90] and rung_steps(2) == [1, 2]
    seeds = {trial_seed(0, n) for n in range(100)} | {trial_seed(1, n) for n in range(100)}
    assert len(seeds) == 200 and trial_seed(0, 5) == trial_seed(0, 5) != trial_seed(0, 5, salt=1)
