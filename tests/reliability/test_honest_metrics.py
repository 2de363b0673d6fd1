"""Metrics that are what they say (issue 22, debatable): a one-speaker data set is refused, and with one
utterance per speaker ``train`` says its accuracy is on training utterances while ``search`` refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import run


def _synth(target: Path, speakers: int, utterances: int, test: int) -> Path:
    code, _, stderr = run(CliRunner(), "data", "synth", target, "--speakers", speakers, "--utterances", utterances,
                          "--test-per-speaker", test)
    assert code == 0, stderr
    return target


def _keep_one_speaker(root: Path) -> str:
    """Drop every speaker but the first from metadata.json and mapping.json (the features stay)."""
    meta = json.loads((root / "metadata.json").read_text())
    first = sorted(meta["speakers"])[0]
    meta["speakers"] = {first: meta["speakers"][first]}
    (root / "metadata.json").write_text(json.dumps(meta))
    (root / "mapping.json").write_text(json.dumps({"speaker2id": {first: 0}, "id2speaker": {"0": first}}))
    return first


@pytest.mark.parametrize("command", ["train", "search"])
def test_a_one_speaker_data_set_is_refused(tmp_path: Path, command: str) -> None:
    data = _synth(tmp_path / "one", speakers=2, utterances=4, test=1)
    speaker = _keep_one_speaker(data)
    out = tmp_path / "out"
    extra = ["--steps", 4, "--out", out] if command == "train" else ["--time-limit", "30s"]
    code, _, stderr = run(CliRunner(), command, "--data", data, "--device", "cpu", "--home", tmp_path / "home",
                          *extra)
    assert code != 0
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert str(data) in line and "1 speaker" in line and speaker in line and "at least 2" in line
    assert not out.exists()
    assert not list((tmp_path / "home").glob("*.db"))


def test_one_utterance_per_speaker_trains_and_says_its_accuracy_is_on_training_data(tmp_path: Path) -> None:
    data = _synth(tmp_path / "single", speakers=3, utterances=2, test=1)
    out = tmp_path / "run"
    code, stdout, stderr = run(CliRunner(), "train", "--preset", "simple", "--data", data, "--steps", 4,
                               "--valid-every", 2, "--out", out, "--device", "cpu", "--home", tmp_path / "home")
    assert code == 0, stderr
    assert "0 valid utterances" in stdout
    assert "best training accuracy (no validation utterances" in stdout
    assert "best valid accuracy" not in stdout
    result = json.loads((out / "config.json").read_text())["result"]
    assert result["scored_on"] == "train"


def test_one_utterance_per_speaker_is_refused_for_a_search(tmp_path: Path) -> None:
    data = _synth(tmp_path / "single", speakers=3, utterances=2, test=1)
    home = tmp_path / "home"
    code, _, stderr = run(CliRunner(), "search", "--data", data, "--time-limit", "30s", "--device", "cpu",
                          "--home", home)
    assert code != 0
    assert "Traceback" not in stderr
    line = stderr.strip().splitlines()[-1]
    assert "single labelled utterance" in line and "validat" in line
    assert not list(home.glob("*.db"))


TINY = ["--encoders", "transformer", "--poolings", "attentive-stats", "--heads", "am-softmax", "--device", "cpu",
        "--steps-per-trial", 10, "--quality", "fast", "--no-portfolio", "--seed", 3]


def test_refit_while_trials_still_run_says_what_it_uses(tmp_path: Path) -> None:
    """``automel refit`` on a study another process still searches: it says which trials run and what it used."""
    import optuna

    from automel.engine.handle import StudyHandle
    from tests.conftest import HW4_SAMPLE, need

    home = tmp_path / "home"
    code, _, stderr = run(CliRunner(), "search", "--data", need(HW4_SAMPLE), "--study", "busy", "--home", home,
                          "--trials", 1, "--no-refit", *TINY)
    assert code == 0, stderr
    study = optuna.load_study(study_name="busy", storage=StudyHandle(home, "busy").url)
    running = study.ask()  # what a search in another process holds while it trains
    code, stdout, stderr = run(CliRunner(), "refit", "--study", "busy", "--home", home, "--steps", 6,
                               "--quality", "fast", "--adapt", "none", "--device", "cpu")
    assert code == 0, stderr
    said = " ".join(stdout.split())
    assert f"trial {running.number} of study 'busy' is still running" in said
    assert "uses the 1 complete trials there are now" in said


def test_trials_asked_for_are_a_cap_and_the_time_limit_says_when_it_ruled(tmp_path: Path) -> None:
    """``--trials 50`` with a short time limit: the search says the limit ended it, after how many trials."""
    from tests.conftest import HW4_SAMPLE, need

    code, stdout, stderr = run(CliRunner(), "search", "--data", need(HW4_SAMPLE), "--study", "capped", "--home",
                               tmp_path / "home", "--trials", 50, "--time-limit", "30s", "--steps-per-trial", 40,
                               "--pruner", "none", "--no-refit", *TINY[:6])
    assert code == 0, stderr
    said = " ".join((stdout + stderr).split())
    assert "the time limit ended the search after" in said and "of at most 50 trials" in said


def test_a_search_names_the_speakers_validation_cannot_score_and_still_works(tmp_path: Path) -> None:
    """Issue 24's bad input: more speakers than validation utterances. One speaker keeps one labelled
    utterance: the search says so, by name, and finishes."""
    data = _synth(tmp_path / "mixed", speakers=4, utterances=4, test=1)
    meta = json.loads((data / "metadata.json").read_text())
    lonely = sorted(meta["speakers"])[0]
    meta["speakers"][lonely] = meta["speakers"][lonely][:1]
    (data / "metadata.json").write_text(json.dumps(meta))
    code, stdout, stderr = run(CliRunner(), "search", "--data", data, "--home", tmp_path / "home", "--trials", 1,
                               "--time-limit", "30s", *TINY[:6], "--steps-per-trial", 10, "--no-refit",
                               "--adapt", "none")
    assert code == 0, stderr
    said = " ".join((stdout + stderr).split())
    assert f"1 of 4 speakers have a single labelled utterance and none in validation ({lonely})" in said


def test_a_submission_is_never_written_from_scores_that_are_not_finite(tmp_path: Path) -> None:
    """``predict --data`` and every export go through ``train.loop.predict``: NaN scores are one error naming
    the utterance, not a speaker that argmax picked from NaN."""
    import torch

    from automel.errors import DataError
    from automel.model import build_model
    from automel.train.fit import open_workspace
    from automel.train.loop import predict
    from tests.conftest import HW4_SAMPLE, need

    work = open_workspace(need(HW4_SAMPLE), tmp_path / "home")
    model = build_model({"encoder": "tdnn", "pooling": "mean", "head": "softmax"}, work.store.n_mels,
                        work.store.num_classes)
    with torch.no_grad():
        for parameter in model.head.parameters():
            parameter.fill_(float("nan"))
    test = work.store.test_indices()
    with pytest.raises(DataError, match=r"the model's scores are not finite"):
        predict(model, work.store, test, torch.device("cpu"))
