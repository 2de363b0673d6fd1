"""Output a script can read: ``--format json|csv``, full-width tables off a terminal, and a search that
prints one plain line per finished trial when nobody watches a live view (a pipe, a CI or Slurm log)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from automel import registry as registry_module
from automel.engine.handle import StudyHandle
from automel.engine.leaderboard import trial_line
from automel.engine.study import open_storage
from automel.registry import LoadFailure, Registry
from tests.conftest import run

STUDY = "long-values"
LAYOUT = "-".join(["conv3x3", "attention"] * 12)  # a long categorical value: 200 characters, kept whole
LR = 0.0016180339887498949  # every digit must survive
DATASET = "a-data-set-whose-name-is-long-" * 5
REASON = "RuntimeError: " + "the encoder exploded on purpose, " * 6
DISTRIBUTIONS = {"encoder": CategoricalDistribution(["transformer"]),
                 "encoder.fancy.layout": CategoricalDistribution([LAYOUT, "plain"]),
                 "train.lr": FloatDistribution(1e-4, 1e-2, log=True), "train.batch_size": IntDistribution(8, 64)}


def params(layout: str, lr: float, batch_size: int) -> dict[str, object]:
    return {"encoder": "transformer", "encoder.fancy.layout": layout, "train.lr": lr, "train.batch_size": batch_size}


@pytest.fixture
def study(isolated_home: Path) -> optuna.Study:
    """A finished study written straight into the home: three completed trials, one pruned, one failed."""
    created = optuna.create_study(study_name=STUDY, direction="maximize",
                                  storage=open_storage(StudyHandle(isolated_home, STUDY).url, heartbeat=False))
    created.set_user_attr("dataset", {"name": DATASET, "kind": "hw4"})
    for value, trial_params in ((0.75, params(LAYOUT, LR, 16)), (0.5, params("plain", 2e-3, 32)),
                                (0.625, params(LAYOUT, 5e-4, 8))):
        created.add_trial(create_trial(params=trial_params, distributions=DISTRIBUTIONS, value=value,
                                       user_attrs={"steps": 120, "seconds": 4.25}))
    created.add_trial(create_trial(state=TrialState.PRUNED, params=params("plain", 1e-3, 16),
                                   distributions=DISTRIBUTIONS, intermediate_values={40: 0.25},
                                   user_attrs={"steps": 40, "seconds": 1.5}))
    created.add_trial(create_trial(state=TrialState.FAIL, params=params(LAYOUT, 1e-4, 64),
                                   distributions=DISTRIBUTIONS, user_attrs={"fail_reason": REASON}))
    return created


def test_show_json_holds_every_trial_whole(cli: CliRunner, study: optuna.Study) -> None:
    code, stdout, stderr = run(cli, "show", "--study", STUDY, "--format", "json")
    assert code == 0, stderr
    document = json.loads(stdout)  # stdout is the document and nothing else
    assert document["study"] == STUDY and document["direction"] == "maximize"
    trials = document["trials"]
    assert [(t["rank"], t["trial"], t["state"]) for t in trials] == [
        (1, 0, "COMPLETE"), (2, 2, "COMPLETE"), (3, 1, "COMPLETE"), (None, 3, "PRUNED"), (None, 4, "FAIL")]
    best = trials[0]
    assert best["params"] == params(LAYOUT, LR, 16)  # the long string whole, the float to the last digit
    assert best["valid_acc"] == 0.75 and best["steps"] == 120 and best["seconds"] == 4.25
    assert datetime.fromisoformat(best["started"]) <= datetime.fromisoformat(best["completed"])
    assert best["fail_reason"] is None
    assert trials[3]["valid_acc"] is None and trials[3]["steps"] == 40
    assert trials[4]["fail_reason"] == REASON
    assert set(document["importances"]) <= set(DISTRIBUTIONS)
    assert all(isinstance(v, float) for v in document["importances"].values())


def test_show_csv_is_one_row_per_trial(cli: CliRunner, study: optuna.Study) -> None:
    code, stdout, stderr = run(cli, "show", "--study", STUDY, "--format", "csv")
    assert code == 0, stderr
    reader = csv.DictReader(io.StringIO(stdout))
    assert reader.fieldnames == ["rank", "trial", "state", "valid_acc", "steps", "seconds", "n_params", "latency_ms",
                                 "pareto", "started", "completed", "fail_reason", "pruned_reason", *DISTRIBUTIONS]
    rows = list(reader)
    assert [r["trial"] for r in rows] == ["0", "2", "1", "3", "4"]
    assert rows[0]["encoder.fancy.layout"] == LAYOUT and float(rows[0]["train.lr"]) == LR
    assert rows[0]["valid_acc"] == "0.75" and rows[3]["rank"] == "" and rows[4]["fail_reason"] == REASON


def test_studies_json_and_csv(cli: CliRunner, study: optuna.Study, isolated_home: Path) -> None:
    code, stdout, stderr = run(cli, "studies", "--format", "json")
    assert code == 0, stderr
    expected = {"study": STUDY, "storage": StudyHandle(isolated_home, STUDY).url, "dataset": DATASET,
                "dataset_kind": "hw4", "complete": 3, "pruned": 1, "failed": 1, "running": 0, "best_trial": 0,
                "best_valid_acc": 0.75}
    [listed] = json.loads(stdout)
    assert datetime.fromisoformat(listed.pop("last_update")) <= datetime.now()
    assert listed == expected
    code, stdout, _ = run(cli, "studies", "--format", "csv")
    assert code == 0
    [row] = list(csv.DictReader(io.StringIO(stdout)))
    assert row.pop("last_update") and row == {k: str(v) for k, v in expected.items()}


def test_plugins_json_and_csv(cli: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry()
    registry.load_builtins()
    registry.failures.append(LoadFailure("head", "arc", "automel-arc", "ImportError: no module named arc", "1.2"))
    monkeypatch.setattr(registry_module, "default_registry", lambda: registry)
    code, stdout, stderr = run(cli, "plugins", "--format", "json")
    assert code == 0
    rows = json.loads(stdout)
    d_model = next(r for r in rows if r["parameter"] == "encoder.transformer.d_model")
    assert d_model["plugin"] == "transformer" and d_model["distribution"] == "automel"
    assert d_model["range_cpu"] == {"type": "CategoricalDistribution", "choices": [64, 80, 96], "text": "{64, 80, 96}"}
    dim = next(r for r in rows if r["parameter"] == "encoder.transformer.dim_feedforward")["range_gpu"]
    assert (dim["type"], dim["low"], dim["high"], dim["log"]) == ("IntDistribution", 128, 1024, True)
    mean = next(r for r in rows if r["plugin"] == "mean")
    assert mean["parameter"] is None and mean["range_cpu"] is None and mean["error"] is None
    failed = next(r for r in rows if r["plugin"] == "arc")
    assert failed["error"] == "failed to load: ImportError: no module named arc" and failed["version"] == "1.2"
    assert "failed to load" in stderr  # the notes go to stderr: stdout is only the document
    code, stdout, _ = run(cli, "plugins", "--format", "csv", "--scale", "cpu", "--kind", "encoder")
    assert code == 0
    reader = csv.DictReader(io.StringIO(stdout))
    assert reader.fieldnames == ["kind", "plugin", "distribution", "version", "parameter", "range_cpu", "error"]
    by_param = {r["parameter"]: r for r in reader}
    assert by_param["encoder.transformer.d_model"]["range_cpu"] == "{64, 80, 96}"
    assert by_param["encoder.transformer.dim_feedforward"]["range_cpu"] == "int 128..384 log"


@pytest.mark.parametrize("command", [["show", "--study", STUDY], ["studies"], ["plugins"]])
def test_unknown_format_is_one_line(cli: CliRunner, study: optuna.Study, command: list[str]) -> None:
    code, stdout, stderr = run(cli, *command, "--format", "xml")
    assert code == 2 and stdout == ""
    assert stderr.strip().splitlines() == ["error: --format 'xml' is not one of table, json, csv"]


def test_piped_tables_are_not_cut_to_80_columns(study: optuna.Study, isolated_home: Path) -> None:
    # As in a log file: stdout is a pipe and nothing sets COLUMNS, so Rich would fit 80 columns.
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "TTY_COMPATIBLE")}

    def automel(*args: str) -> str:
        done = subprocess.run([sys.executable, "-m", "automel", *args], capture_output=True, text=True, env=env,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout

    shown = automel("show", "--study", STUDY)
    assert "lr=1.6e-03  batch_size=16" in shown  # the key-parameters cell whole, on one line
    assert REASON.strip() in shown
    assert json.loads(automel("show", "--study", STUDY, "--format", "json"))["trials"][0]["params"]["train.lr"] == LR


def test_a_table_wider_than_columns_is_printed_whole(cli: CliRunner, study: optuna.Study) -> None:
    code, stdout, _ = run(cli, "studies")  # COLUMNS is 200 here; the row is wider
    assert code == 0
    row = next(line for line in stdout.splitlines() if STUDY in line)
    assert f"{DATASET} [hw4]" in row and len(row) > 200


TRIAL_LINE = re.compile(r"^trial (\d+) (COMPLETE|PRUNED|FAIL): (.+), (\d+) steps, [\d.]+ s "
                        r"\[(\d+)/(\d+) finished, \d+ s elapsed\]$")


def test_search_off_a_terminal_prints_a_line_per_trial(cli: CliRunner, tmp_path: Path, isolated_home: Path) -> None:
    data = tmp_path / "syn"
    code, _, stderr = run(cli, "data", "synth", data, "--speakers", 4, "--utterances", 8, "--test-per-speaker", 2)
    assert code == 0, stderr
    code, stdout, stderr = run(cli, "search", "--data", data, "--study", "plain", "--trials", 2,
                               "--steps-per-trial", 10, "--pruner", "none", "--sampler", "random", "--no-portfolio",
                               "--encoders", "transformer", "--poolings", "mean", "--heads", "softmax",
                               "--device", "cpu", "--no-refit", "--quality", "fast")
    assert code == 0, stderr
    lines = stdout.splitlines()
    matches = [m for m in map(TRIAL_LINE.match, lines) if m]
    assert [(m[1], m[2], m[4], m[5], m[6]) for m in matches] == [("0", "COMPLETE", "10", "1", "2"),
                                                                 ("1", "COMPLETE", "10", "2", "2")]
    assert all(m[3].startswith("valid ") and m[3].endswith("%") for m in matches)
    started = next(i for i, line in enumerate(lines) if line.startswith("search started: study plain"))
    ended = next(i for i, line in enumerate(lines) if line.startswith("search ended"))
    assert started < lines.index(matches[0][0]) < lines.index(matches[1][0]) < ended
    finish = [line.split(" done in ")[0] for line in lines if " done in " in line]
    assert finish == ["ensemble", "export"]  # no refit line with --no-refit
    assert "steps/s" not in stdout + stderr  # no live view was drawn


def test_trial_line_for_each_state() -> None:
    pruned = create_trial(state=TrialState.PRUNED, params={}, distributions={}, intermediate_values={40: 0.25},
                          user_attrs={"steps": 40, "seconds": 1.5, "pruned_reason": "cut by the time limit"})
    pruned.number = 7
    assert trial_line(pruned, 3, 10, 61.2) == ("trial 7 PRUNED: valid 25.00%, cut by the time limit, 40 steps, "
                                               "1.5 s [3/10 finished, 61 s elapsed]")
    failed = create_trial(state=TrialState.FAIL, params={}, distributions={}, user_attrs={"fail_reason": "boom"})
    assert failed.datetime_start is not None
    failed.datetime_complete = failed.datetime_start + timedelta(seconds=2)
    failed.number = 8
    assert trial_line(failed, 3, 10) == "trial 8 FAIL: boom, 2.0 s [3/10 finished]"
