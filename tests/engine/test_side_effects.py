"""Importing automel changes nothing process-wide (issue 23, item 4): Optuna's logger keeps its filters."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_engine_leaves_optunas_logger_alone() -> None:
    code = ("import optuna, automel.engine.runner, automel.api; "
            "print(len(optuna.logging.get_logger('optuna.study._optimize').filters))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0"


def test_the_filter_is_there_while_trials_run_and_gone_after() -> None:
    import optuna

    from automel.engine.runner import _surplus_hidden

    logger = optuna.logging.get_logger("optuna.study._optimize")
    before = list(logger.filters)
    with _surplus_hidden():
        assert len(logger.filters) == len(before) + 1
    assert logger.filters == before
