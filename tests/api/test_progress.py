"""The one trial progress line (:mod:`automel.api.progress`): which trials get a line, how they are counted,
and that the API's search, ``automel search`` off a terminal and ``automel worker`` print the same line."""

from __future__ import annotations

import io
from datetime import timedelta

import optuna
from optuna.trial import FrozenTrial, TrialState, create_trial
from rich.console import Console

from automel.api.progress import TrialProgress, search_progress_hooks, step_line, trial_progress_line
from automel.engine.counting import SURPLUS_ATTR
from automel.engine.leaderboard import trial_line


def _trial(state: TrialState, value: float | None = None, **attrs: object) -> FrozenTrial:
    made = create_trial(state=state, value=value, params={}, distributions={},
                        intermediate_values={10: value} if value is not None else {},
                        user_attrs={"steps": 10, "seconds": 1.25, **attrs})
    assert made.datetime_start is not None
    made.datetime_complete = made.datetime_start + timedelta(seconds=2)
    return made


def _study(*trials: FrozenTrial) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for trial in trials:
        study.add_trial(trial)
    return study


def test_the_line_names_the_state_score_steps_time_and_count() -> None:
    study = _study(_trial(TrialState.COMPLETE, 0.5))
    trial = study.trials[0]
    assert trial_progress_line(trial, 1, 4, 12.4) == ("trial 0 COMPLETE: valid 50.00%, 10 steps, 1.2 s "
                                                      "[1/4 finished, 12 s elapsed]")
    assert trial_progress_line(trial, 1, 4) == trial_line(trial, 1, 4)


def test_finished_speaks_of_one_trial_counted_with_the_study() -> None:
    study = _study(_trial(TrialState.COMPLETE, 0.5), _trial(TrialState.PRUNED, 0.25),
                   _trial(TrialState.FAIL, fail_reason="boom"), _trial(TrialState.FAIL, **{SURPLUS_ATTR: True}))
    lines: list[str] = []
    progress = TrialProgress(10, lines.append, elapsed=lambda: 3.0)
    for trial in study.trials:
        progress.finished(study, trial)
    assert lines == ["trial 0 COMPLETE: valid 50.00%, 10 steps, 1.2 s [2/10 finished, 3 s elapsed]",
                     "trial 1 PRUNED: valid 25.00%, 10 steps, 1.2 s [2/10 finished, 3 s elapsed]",
                     "trial 2 FAIL: boom, 10 steps, 1.2 s [2/10 finished, 3 s elapsed]"]  # no line for a surplus trial


def test_refresh_says_each_new_trial_once_counting_one_by_one() -> None:
    study = _study(_trial(TrialState.COMPLETE, 0.5))
    lines: list[str] = []
    progress = TrialProgress(4, lines.append, elapsed=lambda: 0.0)
    progress.start(study)  # trial 0 finished before: no news
    study.add_trial(_trial(TrialState.COMPLETE, 0.75))
    study.add_trial(_trial(TrialState.FAIL, **{SURPLUS_ATTR: True}))
    study.add_trial(_trial(TrialState.PRUNED, 0.1))
    progress.refresh(study)
    progress.refresh(study)  # nothing new
    assert [line.split(" [")[1] for line in lines] == ["2/4 finished, 0 s elapsed]", "3/4 finished, 0 s elapsed]"]
    assert [line.split(":")[0] for line in lines] == ["trial 1 COMPLETE", "trial 3 PRUNED"]


def test_search_hooks_say_start_trials_and_cache_counts() -> None:
    lines: list[str] = []
    hooks = search_progress_hooks(lines.append, 3)
    study = _study(_trial(TrialState.COMPLETE, 0.5))
    hooks.events.on_start(study, 20)
    study.add_trial(_trial(TrialState.COMPLETE, 0.6))
    hooks.events.on_trial_end(study, study.trials[-1])
    hooks.refresh(study)  # what another worker did shows too; nothing twice
    assert lines[0] == "search started: study " + study.study_name + ", 20 steps per trial"
    assert len(lines) == 2 and lines[1].startswith("trial 1 COMPLETE: valid 60.00%") and "[2/3 finished, " in lines[1]
    assert search_progress_hooks(None, 3).events.on_trial_end(study, study.trials[0]) is None  # silent


def test_the_cli_views_print_the_same_line() -> None:
    from automel.cli._live import PlainView

    out = io.StringIO()
    view = PlainView(5, Console(file=out, width=200), lambda: 7.0)
    study = _study()
    view.events().on_start(study, 10)
    study.add_trial(_trial(TrialState.COMPLETE, 0.5))
    view.events().on_trial_end(study, study.trials[0])
    assert out.getvalue().splitlines() == [
        "search started: study " + study.study_name + ", 10 steps per trial, 0/5 trials finished [7 s elapsed]",
        trial_progress_line(study.trials[0], 1, 5, 7.0)]


def test_step_line() -> None:
    metrics = {"loss": 1.23456, "train_acc": 0.5, "valid_acc": 0.625, "lr": 1e-3, "seconds": 2.0}
    assert step_line(200, 2000, metrics) == "step 200/2000: loss 1.235, train 50.0%, valid 62.5%"
    assert step_line(30, None, {"loss": 2.0, "train_acc": 0.1}) == "step 30: loss 2.000, train 10.0%"
