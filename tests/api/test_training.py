"""``automel.api.train`` as a notebook uses it: a run directory with real scores, progress lines, and one
typed error line, naming the value, for each bad argument (before anything is written)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import automel.api
from automel.errors import ConfigError, DataError, PluginError
from automel.score import score_submission
from tests.conftest import run

RUN_FILES = ("model.safetensors", "config.json", "metrics.jsonl", "output.csv")


def test_train_writes_a_run_directory_and_returns_its_scores(trained: automel.api.TrainRun, hw4_sample: Path,
                                                             hw4_answers: Path) -> None:
    assert all((trained.path / name).is_file() for name in RUN_FILES)
    assert trained.submission == trained.path / "output.csv"
    assert 0.0 <= trained.valid_acc <= 1.0 and trained.scored_on == "valid"
    assert trained.steps == trained.planned_steps == 4 and 1 <= trained.best_step <= 4
    assert trained.schedule == "steps" and not trained.ended_by_time_limit
    assert 0 < trained.seconds <= trained.elapsed_s
    plan = trained.plan
    assert (plan.name, plan.dataset, plan.device, plan.steps, plan.time_limit_s) == ("simple", "hw4-sample", "cpu", 4,
                                                                                      None)
    assert plan.train_utterances > plan.valid_utterances > 0 and plan.out == trained.path
    config = json.loads((trained.path / "config.json").read_text())
    assert config["params"]["encoder"] == "transformer" and config["result"]["valid_acc"] == trained.valid_acc
    assert trained.record.speakers == tuple(config["speakers"])
    metrics = [json.loads(line) for line in (trained.path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [2, 4]
    with (trained.path / "output.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 48 and {r["Category"] for r in rows} <= set(trained.record.speakers)
    assert 0.0 <= score_submission(trained.path / "output.csv", hw4_answers).accuracy <= 1.0


def test_train_tells_its_progress_callback_the_plan_and_each_validation(
        training: tuple[automel.api.TrainRun, list[str]]) -> None:
    run_, lines = training
    assert str(run_.plan) in lines and str(run_.plan).startswith("training simple on hw4-sample [hw4] (")
    validations = [line for line in lines if line.startswith("step ")]
    assert [line.split(":")[0] for line in validations] == ["step 2/4", "step 4/4"]
    assert all("loss " in line and "valid " in line and line.endswith("%") for line in validations)


def test_the_trained_model_loads_and_predicts_like_its_submission(trained: automel.api.TrainRun,
                                                                  hw4_sample: Path) -> None:
    model = trained.load()
    assert model.path == trained.path and model.speakers == trained.record.speakers
    with (trained.path / "output.csv").open() as fh:
        first = next(csv.DictReader(fh))
    assert model.predict(hw4_sample / first["Id"])[0].speaker == first["Category"]


def test_a_dict_config_lays_parameters_over_the_preset(tmp_path: Path, hw4_sample: Path) -> None:
    run_ = automel.api.train("simple", {"train.lr": 2e-3, "encoder.transformer.d_model": 64}, hw4_sample, steps=2,
                             valid_every=2, device="cpu", out=tmp_path / "run", home=tmp_path / "home")
    params = json.loads((run_.path / "config.json").read_text())["params"]
    assert params["train.lr"] == 2e-3 and params["encoder.transformer.d_model"] == 64
    assert run_.plan.name == "simple" and run_.steps == 2


def test_a_run_config_json_gives_its_parameters(trained: automel.api.TrainRun) -> None:
    params = automel.api.training.train_params(None, trained.path / "config.json")
    assert params == json.loads((trained.path / "config.json").read_text())["params"]


@pytest.mark.parametrize(("options", "error", "words"), [
    ({"preset": "legendary"}, ConfigError, "unknown preset 'legendary'"),
    ({"config": "missing.json"}, ConfigError, "missing.json"),
    ({"preset": "simple", "config": {"encoder": "nope"}}, PluginError, "nope"),
    ({"config": {"params": 3, "format": "automel-run/1"}}, ConfigError, "'params' must be a JSON object"),
    ({"steps": 0}, ConfigError, "`steps` must be a whole number of at least 1, got 0"),
    ({"valid_every": 1.5}, ConfigError, "`valid_every` must be a whole number of at least 1, got 1.5"),
    ({"seed": -1}, ConfigError, "-1"),
    ({"time_limit": "soon"}, ConfigError, "`time_limit` 'soon' is not a duration"),
    ({"time_limit": "10s"}, ConfigError, "`time_limit` 10s is shorter than the shortest useful run"),
    ({"large_margin": 0.95}, ConfigError, "`large_margin` must be a fraction of the run from 0 to 0.9, got 0.95"),
    ({"average": -1}, ConfigError, "`average` must be a whole number of at least 0, got -1"),
    ({"compile": "yes"}, ConfigError, "`compile` must be True or False, got 'yes'"),
    ({"device": "cuda:7"}, ConfigError, "cuda"),
    ({"data": "no-such-dir"}, DataError, "no-such-dir"),
    ({"noise": "no-such-noise"}, DataError, "no-such-noise"),
    ({"progress": "print"}, ConfigError, "`progress` must be a function"),
])
def test_bad_arguments_are_one_typed_line_and_write_nothing(tmp_path: Path, hw4_sample: Path, options: dict[str, Any],
                                                            error: type, words: str) -> None:
    given: dict[str, Any] = {"data": hw4_sample, "steps": 2, "device": "cpu", "out": tmp_path / "run",
                             "home": tmp_path / "home", **options}
    with pytest.raises(error) as caught:
        automel.api.train(**given)
    message = str(caught.value)
    assert words in message and "\n" not in message, message
    assert not (tmp_path / "run").exists()


def test_an_out_that_holds_files_is_refused_and_kept(tmp_path: Path, hw4_sample: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="already exists and is not empty; choose another `out`"):
        automel.api.train(data=hw4_sample, steps=2, device="cpu", out=out, home=tmp_path / "home")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_out_inside_the_data_set_is_refused(tmp_path: Path, hw4_sample: Path) -> None:
    with pytest.raises(ConfigError, match="lies inside the data set"):
        automel.api.train(data=hw4_sample, steps=2, device="cpu", out=hw4_sample / "run", home=tmp_path / "home")
    assert not (hw4_sample / "run").exists()


def test_the_cli_is_a_layer_over_the_api(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, hw4_sample: Path,
                                         tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def fake(*args: Any, **options: Any) -> None:
        seen.update(options, args=args)
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(automel.api, "train", fake)
    code, _, stderr = run(cli, "train", "--preset", "medium", "--data", hw4_sample, "--time-limit", "2m",
                          "--steps", 7, "--large-margin", 0.2, "--out", tmp_path / "run", "--compile")
    assert code == 2 and "error: stopped by the test" in stderr
    assert seen["args"] == ("medium", None, hw4_sample) and seen["time_limit"] == "2m" and seen["steps"] == 7
    assert seen["large_margin"] == 0.2 and seen["compile"] is True and seen["out"] == tmp_path / "run"
    assert seen["hooks"] is not None
