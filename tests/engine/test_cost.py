"""Cost-aware trials: a configuration far slower per step than the study's others is pruned early, saying why."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from automel.engine.cost import MAX_COST_RATIO, MIN_STEPS, STEP_S_ATTR, TooCostly, cost_guard, reference_step_s


def _study(*step_s: float) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for cost in step_s:
        study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={STEP_S_ATTR: cost}))
    return study


def _objective(cost: float, steps: int = 1000, ratio: float | None = MAX_COST_RATIO):
    def run(trial: optuna.Trial) -> float:
        guard = cost_guard(trial, steps, ratio)
        for step in (5, 25, 50):  # the loop's log steps, with the seconds since the run began
            guard(step, {"seconds": step * cost})
        return 0.9

    return run


def test_a_trial_many_times_costlier_than_the_median_is_pruned_with_its_reason() -> None:
    study = _study(0.010, 0.012, 0.011)
    study.optimize(_objective(0.050), n_trials=1)
    trial = study.trials[-1]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs[STEP_S_ATTR] == pytest.approx(0.05)
    assert trial.user_attrs["pruned_reason"] == ("too slow: 50 ms per step, 4.5 times the study's median (11 ms); "
                                                 "its 1000 steps would take 50 s")


@pytest.mark.parametrize(("cost", "steps", "ratio"), [
    (0.030, 1000, MAX_COST_RATIO),  # under the ratio (2.7 times)
    (0.050, MIN_STEPS - 1, MAX_COST_RATIO),  # too short a trial to be worth stopping
    (0.050, 1000, None),  # the check switched off: the cost is still recorded
])
def test_a_trial_within_its_cost_or_too_short_to_matter_runs_on(cost: float, steps: int, ratio: float | None) -> None:
    study = _study(0.010, 0.012, 0.011)
    study.optimize(_objective(cost, steps, ratio), n_trials=1)
    trial = study.trials[-1]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs[STEP_S_ATTR] == pytest.approx(cost)


def test_the_first_trial_has_nothing_to_compare_with_and_runs() -> None:
    study = _study()
    study.optimize(_objective(5.0), n_trials=1)
    assert study.trials[0].state == TrialState.COMPLETE
    assert reference_step_s(study, number=99) == pytest.approx(5.0)
    assert reference_step_s(study, number=0) is None  # a trial is never its own reference
    assert issubclass(TooCostly, optuna.TrialPruned)
