"""How a study's trials count towards its target: finished, surplus (skipped) and covered ahead.

One home for these rules, below both the objective (which skips a surplus trial) and the runner (which
decides whether to start one), so that neither has to import the other.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
SURPLUS_ATTR = "surplus"


class SurplusTrial(Exception):
    """Raised inside a trial that a worker started after the study's target was already covered."""


def is_surplus(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and bool(trial.user_attrs.get(SURPLUS_ATTR))


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials by state; surplus trials (started by a worker after the target was met) count as skipped."""
    counts = {s.name.lower(): 0 for s in TrialState}
    counts["skipped"] = 0
    for trial in study.get_trials(deepcopy=False):
        counts["skipped" if is_surplus(trial) else trial.state.name.lower()] += 1
    counts["finished"] = counts["complete"] + counts["pruned"]
    return counts


def covered_ahead(study: optuna.Study, number: int) -> int:
    """Trials numbered before ``number`` that finished or may still finish (running or queued)."""
    alive = (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
    return sum(1 for t in study.get_trials(deepcopy=False) if t.number < number and t.state in alive)
