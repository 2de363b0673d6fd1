"""``automel search --time-limit``: the budget, refit, ensemble and ``automel refit``, driven through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from automel.engine.budget import CHANCE_TRIALS, MIN_TIME_LIMIT_S, parse_duration
from automel.engine.handle import StudyHandle
from automel.engine.study import open_storage
from tests.conftest import HW4_SAMPLE, need, run

# Wall-clock limits, signals and several processes: run alone, after the parallel part of `make test`.
pytestmark = pytest.mark.serial

FAST = ["--encoders", "transformer", "--poolings", "mean,attentive-stats", "--heads", "softmax,am-softmax",
        "--device", "cpu"]


def load(home: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(StudyHandle(home, name).url, heartbeat=False))


def score(cli: CliRunner, submission: Path, answers: Path) -> float:
    code, stdout, stderr = run(cli, "score", submission, answers)
    assert code == 0, stderr
    return float(stdout.split()[1])


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("600", 600), ("1.5h", 5400),
                                               (" 45 s ", 45)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["0", "-5m", "abc", "5 days", "", "0s"])
def test_bad_time_limits_fail_before_anything_is_written(cli: CliRunner, hw4_sample: Path, isolated_home: Path,
                                                         bad: str) -> None:
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--time-limit", bad, *FAST)
    assert code == 2
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--time-limit" in lines[0], stderr
    assert not list(isolated_home.glob("*.db")) and not (isolated_home / "hw4-sample").exists()


def test_a_limit_below_the_shortest_useful_run_names_the_minimum(cli: CliRunner, hw4_sample: Path,
                                                                isolated_home: Path) -> None:
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--time-limit", "10s", *FAST)
    assert code == 2
    assert f"{MIN_TIME_LIMIT_S:g}s" in stderr and "shortest useful run" in stderr
    assert not list(isolated_home.glob("*.db"))


def test_time_limited_search_refits_on_all_data_and_accounts_for_its_budget(
        cli: CliRunner, hw4_sample: Path, hw4_answers: Path, isolated_home: Path) -> None:
    code, stdout, stderr = run(cli, "search", "--data", hw4_sample, "--study", "budget", "--time-limit", "40s",
                               "--quality", "fast", *FAST)
    assert code == 0, stderr
    assert stdout.splitlines()[0].startswith("automel search: time limit 40s, quality fast")
    study = load(isolated_home, "budget")
    trials = study.get_trials(deepcopy=False)
    # the portfolio's transformer entry is the first trial; the rest of the portfolio does not fit --encoders
    assert trials[0].user_attrs.get("portfolio") is True and trials[0].params["encoder"] == "transformer"
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    # successive halving: validation (and pruning) at the rungs of the study's last-rung step count
    steps = study.user_attrs["steps_per_trial"]
    assert steps % 3 == 0 and steps >= 12
    # the budget adds up, within the limit
    (entry,) = study.user_attrs["budget_runs"]
    assert entry["time_limit_s"] == 40 and entry["quality"] == "fast"
    assert sum(entry["phases_s"].values()) <= entry["total_s"] + 1e-6
    assert entry["total_s"] <= 40 * 1.05
    assert {"search", "refit", "export"} <= set(entry["phases_s"])
    # the export is the refit model, trained on every labelled utterance, and says so
    best = isolated_home / "budget" / "best"
    config = json.loads((best / "config.json").read_text())
    refit = config["refit"]
    metadata = json.loads((hw4_sample / "metadata.json").read_text())
    labelled = sum(len(u) for u in metadata["speakers"].values())
    assert refit["data"] == "train+valid" and refit["utterances"] == labelled
    assert config["split"]["valid"] == [] and refit["held_out_score"] is None
    # the refit's schedule ended annealed, by steps or by the clock, and says what was planned and what ran
    assert refit["annealed"] and refit["schedule"] in ("steps", "clock") and refit["steps"] <= refit["planned_steps"]
    info = json.loads((best / "export.json").read_text())
    assert info["kind"] == "refit" and refit["trial"] == info["members"][0]["trial"]
    card = (best / "README.md").read_text()
    assert "no held-out score" in card and f"trial {refit['trial']}" in card
    assert score(cli, best / "output.csv", hw4_answers) > 0.5
    # predict on the export rewrites the same submission
    code, _, stderr = run(cli, "predict", best, "--out", isolated_home / "again.csv", "--device", "cpu")
    assert code == 0, stderr
    assert (isolated_home / "again.csv").read_text() == (best / "output.csv").read_text()
    # a resumed study may take another limit: the limit belongs to the command
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--study", "budget", "--time-limit", "30s",
                          "--quality", "fast", *FAST)
    assert code == 0, stderr
    runs = load(isolated_home, "budget").user_attrs["budget_runs"]
    assert [r["time_limit_s"] for r in runs] == [40, 30] and runs[1]["total_s"] <= 30 * 1.05


@pytest.fixture(scope="module")
def searched_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished study without refit, once per module: its export is the best trial itself.

    No pruning, so all four trials complete and the ensemble test has several candidates whatever the
    sampler draws.
    """
    home = tmp_path_factory.mktemp("searched")
    code, _, stderr = run(CliRunner(), "search", "--data", need(HW4_SAMPLE), "--study", "s", "--home", home,
                          "--trials", 4, "--steps-per-trial", 36, "--no-refit", "--no-portfolio", "--seed", 3, *FAST,
                          "--pruner", "none")
    assert code == 0, stderr
    return home


@pytest.fixture
def searched(searched_home: Path, isolated_home: Path) -> Path:
    """A copy of that study in the test's own home (tests refit and re-export it); its export folder."""
    shutil.copytree(searched_home, isolated_home, dirs_exist_ok=True)
    return isolated_home / "s" / "best"


def test_the_export_adapts_to_the_test_utterances_and_records_it(cli: CliRunner, searched: Path,
                                                                  isolated_home: Path) -> None:
    info = json.loads((searched / "export.json").read_text())
    adaptation = info["adaptation"]
    assert adaptation["mode"] == "test" and adaptation["utterances"] == 48 and adaptation["skipped"] is None
    assert json.loads((searched / "config.json").read_text())["adaptation"] == adaptation
    assert "## Adaptation" in (searched / "README.md").read_text()
    # the weights stay as trained: predict --adapt none is the trial itself, auto adapts again like the export
    code, _, stderr = run(cli, "predict", searched, "--out", isolated_home / "auto.csv", "--device", "cpu")
    assert code == 0 and "test utterances" in stderr
    assert (isolated_home / "auto.csv").read_text() == (searched / "output.csv").read_text()
    # an export without adaptation records none, and a bad value is refused before any work
    code, _, stderr = run(cli, "export", "--study", "s", "--adapt", "none", "--out", isolated_home / "plain")
    assert code == 0, stderr
    assert "adaptation" not in json.loads((isolated_home / "plain" / "export.json").read_text())
    code, _, stderr = run(cli, "refit", "--study", "s", "--steps", 10, "--adapt", "nowhere")
    assert code == 2 and "--adapt 'nowhere'" in stderr and len(stderr.strip().splitlines()) == 1
    # a refit says what its submission was adapted to
    code, stdout, stderr = run(cli, "refit", "--study", "s", "--steps", 10, "--device", "cpu")
    assert code == 0, stderr
    assert "BatchNorm layers' statistics to the 48 test utterances" in stdout or \
        "adapted feature statistics to the 48 test utterances" in stdout


def test_no_refit_exports_the_best_trial(searched: Path, isolated_home: Path) -> None:
    info = json.loads((searched / "export.json").read_text())
    study = load(isolated_home, "s")
    assert info["kind"] == "trial" and info["trial"] == study.best_trial.number
    assert "refit" not in json.loads((searched / "config.json").read_text())


def test_refit_command_refits_a_finished_study(cli: CliRunner, searched: Path, hw4_answers: Path) -> None:
    before = (searched / "export.json").read_text()
    code, _, stderr = run(cli, "refit", "--study", "s", "--steps", 25, "--formats", "torchscript,gif")
    assert code == 2 and "gif" in stderr and (searched / "export.json").read_text() == before  # refused at once
    code, _, stderr = run(cli, "refit", "--study", "s", "--steps", 25, "--quality", "fast", "--device", "cpu",
                          "--formats", "torchscript")
    assert code == 0, stderr
    config = json.loads((searched / "config.json").read_text())
    assert config["refit"]["steps"] == 25 and config["refit"]["data"] == "train+valid"
    assert json.loads((searched / "export.json").read_text())["kind"] == "refit"
    assert (searched / "model.ts").is_file()  # the deployable file, checked against PyTorch before it was kept
    assert score(cli, searched / "output.csv", hw4_answers) > 0.1


def test_an_ensemble_export_predicts_and_scores(cli: CliRunner, searched: Path, hw4_sample: Path, hw4_answers: Path,
                                                isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    import automel.ensemble as ensemble

    real = ensemble.greedy_ensemble

    def always_two(probas: list[np.ndarray], labels: np.ndarray, max_rounds: int = 25) -> ensemble.EnsembleChoice:
        # the selection itself is tested in tests/test_ensemble.py; here it must pick two members
        choice = real(probas, labels, max_rounds)
        return ensemble.EnsembleChoice(np.array([0.6, 0.4] + [0.0] * (len(probas) - 2)), 1.0, 0.0, 0,
                                       choice.best_single_acc - 0.01, choice.best_single_loss)

    real_accuracy = ensemble.mixture_accuracy

    def two_win(probas: list[np.ndarray], weights: list[float], labels: np.ndarray) -> float:
        # the decision is made on the members' real probabilities; here the two-member mix must win
        return 1.0 if sum(w > 0 for w in weights) > 1 else real_accuracy(probas, weights, labels)

    monkeypatch.setattr(ensemble, "greedy_ensemble", always_two)
    monkeypatch.setattr(ensemble, "mixture_accuracy", two_win)
    code, _, stderr = run(cli, "refit", "--study", "s", "--steps", 20, "--quality", "balanced",
                               "--device", "cpu")
    assert code == 0, stderr
    manifest = json.loads((searched / "ensemble.json").read_text())
    assert len(manifest["members"]) == 2 and abs(sum(m["weight"] for m in manifest["members"]) - 1) < 1e-6
    assert json.loads((searched / "export.json").read_text())["kind"] == "ensemble"
    out = isolated_home / "ensemble.csv"
    code, _, stderr = run(cli, "predict", searched, "--out", out, "--device", "cpu")
    assert code == 0, stderr
    assert out.read_text() == (searched / "output.csv").read_text()
    assert score(cli, out, hw4_answers) > 0.1


def test_ctrl_c_during_the_refit_keeps_the_search_and_the_previous_export(
        cli: CliRunner, hw4_sample: Path, searched: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import automel.engine.finish.refit as refit

    before = {p.name: p.read_bytes() for p in searched.iterdir()}
    trials_before = [(t.number, t.state, t.value) for t in load(isolated_home, "s").get_trials(deepcopy=False)]

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(refit, "train_run", interrupted)  # the refit's training (trials train elsewhere)
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--study", "s", "--trials", 5, "--steps-per-trial", 36,
                          "--no-portfolio", "--seed", 3, *FAST)
    assert code == 130
    assert "automel refit --study s" in stderr
    assert {p.name: p.read_bytes() for p in searched.iterdir()} == before
    after = [(t.number, t.state, t.value) for t in load(isolated_home, "s").get_trials(deepcopy=False)]
    assert after[: len(trials_before)] == trials_before and len(after) == len(trials_before) + 1
    assert not list(searched.parent.glob(".best.*"))


def test_chance_is_judged_against_the_size_of_the_validation_set() -> None:
    from automel.engine.budget import above_chance

    assert not above_chance(4 / 256, 256, 256)  # 4 of 256 right among 256 speakers: noise
    assert above_chance(12 / 256, 256, 256)
    assert not above_chance(8 / 256, 256, 64) and above_chance(0.2, 256, 64)
    assert above_chance(None, 256, 64) and above_chance(0.0, 0, 64)  # nothing to judge by


def test_trials_at_chance_end_the_search_and_the_time_goes_to_the_refit(cli: CliRunner, isolated_home: Path) -> None:
    data = isolated_home / "many-speakers"
    code, _, stderr = run(cli, "data", "synth", data, "--speakers", 48, "--utterances", 3, "--test-per-speaker", 1)
    assert code == 0, stderr
    code, stdout, stderr = run(cli, "search", "--data", data, "--study", "chance", "--time-limit", "45s",
                               "--steps-per-trial", 12, *FAST)
    assert code == 0, stderr
    assert "search ended early: trials of this length stay at chance" in stdout
    study = load(isolated_home, "chance")
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == CHANCE_TRIALS  # no more trials once that many all stayed at chance
    refit = json.loads((isolated_home / "chance" / "best" / "config.json").read_text())["refit"]
    assert refit["trial"] == 0 and refit["steps"] > 12  # the portfolio's first entry, trained far longer


def test_an_unknown_quality_fails_before_anything_is_written(cli: CliRunner, hw4_sample: Path,
                                                             isolated_home: Path) -> None:
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--quality", "superb", *FAST)
    assert code == 2 and "--quality 'superb' is unknown (choose fast, balanced, best)" in stderr
    assert not list(isolated_home.glob("*.db"))
