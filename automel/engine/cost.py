"""Trials judged at equal cost: a configuration far slower per step than the study's others stops early.

Every trial of a study trains the same number of steps (the rungs of successive halving are steps), so a
configuration that costs several times another per step also takes several times its share of the
search: on a CPU the course's ``boss`` Conformer costs about 4.6 times a TDNN per step, and once took a
third of a 30-minute search, and lost. Each trial therefore measures its own seconds per step over its
first steps (recorded as the ``step_s`` attribute, which the leaderboard and the sampler see) and
compares them with the median of the study's other trials. A trial over :data:`MAX_COST_RATIO` times that
median is pruned there and then, with the reason; the sampler (TPE ranks a pruned trial with no
reported value below every other) learns to draw such configurations less. The first trial, with nothing
to compare against, always runs; so does every trial when all configurations cost alike.

This is cost-aware search in its simplest robust form: compare at equal *time* rather than equal steps
(Snoek et al. 2012, "Practical Bayesian Optimization of Machine Learning Algorithms", weigh improvement
per second for the same reason).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

import optuna

STEP_S_ATTR = "step_s"
MAX_COST_RATIO = 3.0  # a trial may cost up to this many times the study's median per step
MEASURE_AT = 20  # the first log step at or after this measures the cost (past the first, slower, steps)
MIN_STEPS = 300  # trials shorter than this cost too little to be worth stopping


class TooCostly(optuna.TrialPruned):
    """Raised inside a trial whose measured cost per step is over the study's limit."""


def reference_step_s(study: optuna.Study, number: int) -> float | None:
    """The median seconds per step of the study's other trials that measured theirs, or None."""
    measured = [float(t.user_attrs[STEP_S_ATTR]) for t in study.get_trials(deepcopy=False)
                if t.number != number and STEP_S_ATTR in t.user_attrs]
    return statistics.median(measured) if measured else None


def cost_guard(trial: optuna.Trial, steps: int, max_ratio: float | None) -> Callable[[int, dict[str, float]], None]:
    """A progress hook for ``fit``: records the trial's cost once, and raises :class:`TooCostly` when it is
    more than ``max_ratio`` times the study's median (None: record only)."""
    done = False

    def check(step: int, metrics: dict[str, float]) -> None:
        nonlocal done
        if done or step < MEASURE_AT:
            return
        done = True
        step_s = float(metrics["seconds"]) / step
        reference = reference_step_s(trial.study, trial.number)
        trial.set_user_attr(STEP_S_ATTR, round(step_s, 6))
        if max_ratio is None or reference is None or steps < MIN_STEPS or step_s <= max_ratio * reference:
            return
        reason = (f"too slow: {step_s * 1000:.0f} ms per step, {step_s / reference:.1f} times the study's median "
                  f"({reference * 1000:.0f} ms); its {steps} steps would take {step_s * steps:.0f} s")
        trial.set_user_attr("pruned_reason", reason)
        raise TooCostly(reason)

    return check
