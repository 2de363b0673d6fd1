"""Importing or using automel changes nothing process-wide (issue 23, item 4): Optuna's logger keeps its
filters, and other SQLite databases keep their journal mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_importing_the_engine_leaves_optunas_logger_alone() -> None:
    code = ("import optuna, automel.engine.search, automel.api; "
            "print(len(optuna.logging.get_logger('optuna.study._optimize').filters))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"


def test_the_filter_is_there_while_trials_run_and_gone_after() -> None:
    import optuna

    from automel.engine.search import _surplus_hidden

    logger = optuna.logging.get_logger("optuna.study._optimize")
    before = list(logger.filters)
    with _surplus_hidden():
        assert len(logger.filters) == len(before) + 1
    assert logger.filters == before


def test_opening_a_study_switches_only_its_own_database_to_wal(tmp_path: Path) -> None:
    """The pragmas go on automel's own engine: a notebook's other SQLite database stays in its journal mode
    (WAL is stored in the file, so a process-wide listener would have changed the user's file for good)."""
    code = f"""
import sqlite3, sqlalchemy, optuna
from automel.engine.study import open_storage
optuna.create_study(study_name="s", storage=open_storage("sqlite:///{tmp_path}/study.db"))
other = sqlalchemy.create_engine("sqlite:///{tmp_path}/other.db")
with other.connect() as c:
    print(c.exec_driver_sql("PRAGMA journal_mode").scalar())
print(sqlite3.connect("{tmp_path}/study.db").execute("PRAGMA journal_mode").fetchone()[0])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["delete", "wal"]
