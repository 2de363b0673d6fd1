"""``automel search --objective robust`` (issue 20, section 4): trials are judged on clean validation
utterances and on shifted copies of them; both scores show; the objective is frozen with the study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import run

TINY = ["--encoders", "tdnn", "--poolings", "attentive-stats", "--heads", "am-softmax", "--device", "cpu",
        "--steps-per-trial", 12, "--quality", "fast", "--no-refit", "--no-portfolio", "--pruner", "none",
        "--adapt", "none", "--seed", 5]


@pytest.fixture(scope="module")
def robust_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import HW4_SAMPLE, need

    home = tmp_path_factory.mktemp("robust")
    code, _, stderr = run(CliRunner(), "search", "--data", need(HW4_SAMPLE), "--study", "r", "--home", home,
                          "--trials", 2, "--objective", "robust", *TINY)
    assert code == 0, stderr
    return home


def test_a_robust_trial_is_worth_the_mean_of_its_clean_and_shifted_accuracies(robust_home: Path) -> None:
    import optuna

    from automel.engine.handle import StudyHandle

    study = optuna.load_study(study_name="r", storage=StudyHandle(robust_home, "r").url)
    assert study.user_attrs["objective"] == "robust"
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(trials) == 2
    for trial in trials:
        clean, shifted = trial.user_attrs["valid_acc_clean"], trial.user_attrs["valid_acc_shifted"]
        assert 0.0 <= shifted <= 1.0 and 0.0 <= clean <= 1.0
        assert trial.value == pytest.approx((clean + shifted) / 2, abs=1e-5)


def test_the_leaderboard_shows_both_scores(robust_home: Path) -> None:
    from automel.api import leaderboard

    rows = list(leaderboard("r", home=robust_home))
    assert rows and all(r.valid_acc_clean is not None and r.valid_acc_shifted is not None for r in rows)


def test_a_robust_study_refuses_to_go_on_judged_clean(robust_home: Path, tmp_path: Path) -> None:
    import shutil

    from tests.conftest import HW4_SAMPLE, need

    home = tmp_path / "home"
    shutil.copytree(robust_home, home)
    before = (home / "r.db").read_bytes()
    code, _, stderr = run(CliRunner(), "search", "--data", need(HW4_SAMPLE), "--study", "r", "--home", home,
                          "--trials", 3, "--objective", "clean", *TINY)
    assert code != 0
    line = stderr.strip().splitlines()[-1]
    assert "study 'r' judges its trials by the robust objective, not clean" in line
    assert "Traceback" not in stderr
    assert len(before) > 0


def test_an_unknown_objective_is_one_line_before_any_study(tmp_path: Path) -> None:
    from tests.conftest import HW4_SAMPLE, need

    code, _, stderr = run(CliRunner(), "search", "--data", need(HW4_SAMPLE), "--study", "x", "--home", tmp_path,
                          "--objective", "noisy", *TINY)
    assert code != 0
    assert "objective 'noisy' is not one of: clean, robust" in stderr.strip().splitlines()[-1]
    assert not list(tmp_path.glob("*.db"))


def test_an_old_study_without_an_objective_is_clean(tmp_path: Path) -> None:
    """A study written before objectives existed (no ``objective`` attribute, trials in it) stays ``clean``."""
    import optuna

    from automel.engine.record import settle_objective
    from automel.errors import StudyError

    study = optuna.create_study(direction="maximize")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert settle_objective(study, None) == "clean"
    with pytest.raises(StudyError, match="by the clean objective, not robust"):
        settle_objective(study, "robust")
    fresh = optuna.create_study(direction="maximize")
    assert settle_objective(fresh, "robust") == "robust"
    assert json.dumps(fresh.user_attrs["objective"]) == '"robust"'


def test_show_prints_the_clean_and_shifted_columns(robust_home: Path) -> None:
    code, stdout, stderr = run(CliRunner(), "show", "--study", "r", "--home", robust_home)
    assert code == 0, stderr
    header = next(line for line in stdout.splitlines() if "valid acc" in line)
    assert "clean" in header and "shifted" in header
