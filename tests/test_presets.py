"""The presets' training choices: ``simple`` warms up over the course's 1,000 steps, not 5 % of the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from automel.errors import ConfigError
from automel.presets import PRESETS, preset_params
from automel.score import score_submission
from automel.train.config import TrainParams
from tests.conftest import run


def test_simple_trains_like_the_course() -> None:
    params = TrainParams.from_params(preset_params("simple"))
    assert (params.normalize, params.warmup_steps) == ("none", 1000)
    # the course's 1,000 warm-up steps, capped at half of a shorter run
    assert [params.warmup_for(steps) for steps in (70_000, 2000, 300)] == [1000, 1000, 150]
    # runs that do not ask for a step count keep the fraction
    assert TrainParams().warmup_for(2000) == 100
    assert TrainParams.from_params({"train.warmup": 0.2}).warmup_for(300) == 60
    assert TrainParams.from_params({"train.warmup_steps": 40.0}).warmup_steps == 40  # JSON numbers
    # the training choices add train.* keys only: the model stays the seed's exactly
    assert {k: v for k, v in preset_params("simple").items() if not k.startswith("train.")} == PRESETS["simple"]


def test_negative_warmup_steps_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"train\.warmup_steps = -1 is out of range"):
        TrainParams(warmup_steps=-1)


def test_simple_preset_run_warms_up_in_steps_and_learns(cli: CliRunner, hw4_sample: Path, hw4_answers: Path,
                                                       tmp_path: Path) -> None:
    """A real ``automel train --preset simple``: the loop applies the step warm-up, and the model learns."""
    out = tmp_path / "run"
    code, _, stderr = run(cli, "train", "--preset", "simple", "--data", hw4_sample, "--steps", 200,
                          "--valid-every", 50, "--out", out, "--device", "cpu")
    assert code == 0, stderr
    assert json.loads((out / "config.json").read_text())["params"]["train.warmup_steps"] == 1000
    lr = {int(m["step"]): m["lr"] for m in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}
    # warm-up over half the run (100 steps), then cosine; 5 % of 200 would have peaked by step 10
    assert lr[50] == pytest.approx(1e-3 * 50 / 100)  # the rate the 50th step trained at
    assert lr[100] == pytest.approx(1e-3)
    assert lr[100] > lr[150] > lr[200]
    # chance is 10 % (10 speakers)
    assert score_submission(out / "output.csv", hw4_answers).accuracy >= 0.5
