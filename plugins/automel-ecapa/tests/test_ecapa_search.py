"""A user's search that includes ECAPA-TDNN, run as a real ``automel`` process on hw4-sample."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.trial import TrialState

from automel.engine.handle import StudyHandle


def test_search_with_ecapa_end_to_end(hw4_sample: Path, isolated_home: Path) -> None:
    args = ["search", "--trials", "3", "--encoders", "ecapa-tdnn", "--steps-per-trial", "20",
            "--data", str(hw4_sample), "--study", "s", "--pruner", "none", "--no-refit", "--quality", "fast"]
    env = {**os.environ, "AUTOMEL_HOME": str(isolated_home), "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "automel", *args], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    study = optuna.load_study(study_name="s", storage=StudyHandle(isolated_home, "s").url)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    assert all(t.params["encoder"] == "ecapa-tdnn" for t in trials)
    assert all(t.params["encoder.ecapa-tdnn.channels"] in (64, 96, 128) for t in trials)  # CPU scale

    best = isolated_home / "s" / "best"
    assert json.loads((best / "config.json").read_text())["params"]["encoder"] == "ecapa-tdnn"
    with (best / "output.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    test_ids = json.loads((hw4_sample / "testdata.json").read_text())["utterances"]
    assert rows[0] == ["Id", "Category"]
    assert sorted(r[0] for r in rows[1:]) == sorted(Path(u["feature_path"]).name for u in test_ids)
