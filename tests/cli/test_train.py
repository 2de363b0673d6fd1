"""``automel train``, ``predict`` and ``score`` driven as a user would, on the real hw4-sample."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from automel.model_folder import load_run
from automel.score import score_submission
from tests.conftest import run

# A Conformer step costs ~1 s on one CPU core at the course's batch (32 x 128 frames), so the boss
# preset trains here on small batches: its model is unchanged, a config file only overrides train.*.
SMALL_BATCHES = {"train.batch_size": 16, "train.segment_len": 96, "train.lr": 2e-3, "train.warmup": 0.1}


@pytest.mark.parametrize(("preset", "steps", "overrides", "floor"), [
    ("simple", 200, {}, 0.5),
    ("boss", 80, SMALL_BATCHES, 0.5),
])
def test_train_predict_score(cli: CliRunner, hw4_sample: Path, hw4_answers: Path, tmp_path: Path,
                             preset: str, steps: int, overrides: dict[str, float], floor: float) -> None:
    out = tmp_path / preset
    config = tmp_path / "overrides.json"
    config.write_text(json.dumps(overrides))
    code, stdout, stderr = run(cli, "train", "--preset", preset, "--config", config, "--data", hw4_sample,
                               "--steps", steps, "--valid-every", 40, "--out", out, "--device", "cpu")
    assert code == 0, stderr
    for name in ("model.safetensors", "config.json", "metrics.jsonl", "output.csv"):
        assert (out / name).is_file(), name
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == list(range(40, steps + 1, 40))
    assert json.loads((out / "config.json").read_text())["params"]["encoder"] == (
        "transformer" if preset == "simple" else "conformer")
    # chance is 10%: the run's own submission must be far above it
    assert score_submission(out / "output.csv", hw4_answers).accuracy >= floor
    # predict on the run directory reproduces the run's submission exactly
    submission = tmp_path / "again.csv"
    code, _, stderr = run(cli, "predict", out, "--data", hw4_sample, "--out", submission, "--device", "cpu")
    assert code == 0, stderr
    assert submission.read_text() == (out / "output.csv").read_text()
    code, stdout, _ = run(cli, "score", submission, hw4_answers)
    assert code == 0 and "accuracy" in stdout


def test_run_directory_rebuilds_identical_model(cli: CliRunner, hw4_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = tmp_path / "overrides.json"
    config.write_text(json.dumps(SMALL_BATCHES))
    code, _, stderr = run(cli, "train", "--preset", "hard", "--config", config, "--data", hw4_sample,
                          "--steps", 10, "--valid-every", 5, "--out", out, "--device", "cpu")
    assert code == 0, stderr
    first, record = load_run(out)
    second, _ = load_run(out)
    x = torch.randn(3, 150, 40) + 15
    mask = torch.ones(3, 150, dtype=torch.bool)
    mask[1, 100:] = False
    assert torch.equal(first(x, mask), second(x, mask))
    config = json.loads((out / "config.json").read_text())
    assert config["params"]["encoder"] == "conformer"
    assert config["speakers"] == [f"id1000{i}" for i in range(1, 10)] + ["id10010"]
    assert config["dataset"]["fingerprint"] and config["split"]["valid"]
    assert record.result["valid_acc"] == max(json.loads(line)["valid_acc"]
                                             for line in (out / "metrics.jsonl").read_text().splitlines())


def test_config_file_round_trip(cli: CliRunner, hw4_sample: Path, tmp_path: Path) -> None:
    config = tmp_path / "trial.json"
    config.write_text(json.dumps({"encoder": "transformer", "pooling": "attentive-stats", "head": "aam-softmax",
                                  "encoder.transformer.d_model": 64, "encoder.transformer.nhead": 2,
                                  "train.lr": 2e-3}))
    out = tmp_path / "run"
    code, _, stderr = run(cli, "train", "--config", config, "--data", hw4_sample, "--steps", 20,
                          "--valid-every", 10, "--out", out, "--device", "cpu")
    assert code == 0, stderr
    params = json.loads((out / "config.json").read_text())["params"]
    assert params["encoder.transformer.d_model"] == 64 and params["train.lr"] == 2e-3
    assert params["head"] == "aam-softmax" and "head.aam-softmax.scale" in params


@pytest.mark.parametrize(("args", "message"), [
    (["--preset", "legendary"], "legendary"),
    (["--config", "missing.json"], "missing.json"),
    (["--device", "cuda:7"], "cuda"),
    (["--data", "no-such-dir"], "no-such-dir"),
])
def test_train_bad_input(cli: CliRunner, hw4_sample: Path, tmp_path: Path, args: list[str], message: str) -> None:
    if "--data" not in args:
        args = [*args, "--data", str(hw4_sample)]
    code, _, stderr = run(cli, "train", *args, "--steps", 5, "--out", tmp_path / "run")
    assert code != 0
    assert message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_train_config_with_typo_is_refused(cli: CliRunner, hw4_sample: Path, tmp_path: Path) -> None:
    config = tmp_path / "typo.json"
    config.write_text(json.dumps({"encoder": "transformer", "pooling": "mean", "head": "softmax",
                                  "encoder.transformer.d_modle": 64}))
    code, _, stderr = run(cli, "train", "--config", config, "--data", hw4_sample, "--steps", 5,
                          "--out", tmp_path / "run")
    assert code == 2 and "d_modle" in stderr
    assert not (tmp_path / "run").exists()


def test_train_refuses_existing_out(cli: CliRunner, hw4_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, stderr = run(cli, "train", "--data", hw4_sample, "--steps", 5, "--out", out)
    assert code == 2 and str(out) in stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_score_errors(cli: CliRunner, hw4_answers: Path, tmp_path: Path) -> None:
    lines = hw4_answers.read_text().splitlines()
    cases = {
        "missing": lines[:-1],
        "extra": [*lines, "uttr-ffffffffffffffffffffffffffffffff.pt,id10001"],
        "duplicate": [*lines, lines[1]],
        "header": ["id,category", *lines[1:]],
    }
    for name, content in cases.items():
        path = tmp_path / f"{name}.csv"
        path.write_text("\n".join(content) + "\n")
        code, _, stderr = run(cli, "score", path, hw4_answers)
        assert code == 2, name
        assert str(path) in stderr.replace("\n", ""), name
    code, stdout, _ = run(cli, "score", hw4_answers, hw4_answers)
    assert code == 0 and "1.0000 (48/48)" in stdout


def test_train_deterministic_gives_one_result_and_records_it(cli: CliRunner, hw4_sample: Path,
                                                            tmp_path: Path) -> None:
    outs = [tmp_path / "a", tmp_path / "b"]
    for out in outs:
        code, _, stderr = run(cli, "train", "--preset", "simple", "--data", hw4_sample, "--steps", 20,
                              "--valid-every", 10, "--out", out, "--device", "cpu", "--deterministic")
        assert code == 0, stderr
    (first, record), (second, _) = load_run(outs[0]), load_run(outs[1])
    assert record.extra["settings"]["deterministic"] is True
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    assert not torch.are_deterministic_algorithms_enabled()  # scoped to the runs


def test_train_with_a_time_limit_ends_annealed_and_records_plan_and_run(
        cli: CliRunner, hw4_sample: Path, tmp_path: Path) -> None:
    out = tmp_path / "timed"
    config = tmp_path / "small.json"
    config.write_text(json.dumps({"train.batch_size": 8, "train.segment_len": 64, "train.warmup": 0.0}))
    code, stdout, stderr = run(cli, "train", "--preset", "simple", "--config", config, "--data", hw4_sample,
                               "--time-limit", "30s", "--valid-every", 300, "--out", out, "--device", "cpu")
    assert code == 0, stderr
    assert "annealed by the time limit" in stdout
    result = json.loads((out / "config.json").read_text())["result"]
    assert result["schedule"] == "clock" and result["annealed"] and result["final_lr"] < 1e-5
    assert result["planned_steps"] == 1_000_000 and 0 < result["steps"] < result["planned_steps"]
    assert (out / "output.csv").is_file()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) > 1 and rows[-1]["lr"] < rows[0]["lr"] and rows[-1]["step"] == result["steps"]


@pytest.mark.parametrize(("limit", "says"), [
    ("0", "must be longer than zero"), ("soon", "is not a duration"), ("10s", "shorter than the shortest"),
])
def test_train_refuses_a_bad_time_limit_in_one_line(cli: CliRunner, hw4_sample: Path, tmp_path: Path,
                                                   limit: str, says: str) -> None:
    code, _, stderr = run(cli, "train", "--data", hw4_sample, "--time-limit", limit, "--out", tmp_path / "r")
    assert code == 2 and says in stderr and "--time-limit" in stderr
    assert len(stderr.strip().splitlines()) == 1 and not (tmp_path / "r").exists()
