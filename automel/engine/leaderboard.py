"""The leaderboard of a study: its completed trials, best first, with their size and the accuracy × size front.

One home for what the CLI's tables (``search``, ``show``), the Python API (``SearchResult.leaderboard()``)
and ``export --pareto`` list.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automel.engine.constraints import LATENCY_ATTR, PARAMS_ATTR, is_feasible, pareto_front

KEY_PARAMS = ("train.lr", "train.batch_size", "train.segment_len")


@dataclass(frozen=True)
class LeaderboardRow:
    """One completed trial: rank 1 is the most accurate on validation."""

    rank: int
    trial: int
    encoder: str
    pooling: str
    head: str
    valid_acc: float
    steps: int | None
    seconds: float | None
    n_params: int | None  # the model's parameter count (None for trials made before it was recorded)
    latency_ms: float | None  # CPU ms per 3 s utterance (measured with --max-latency-ms)
    feasible: bool  # within the study's --max-params/--max-latency-ms
    pareto: bool  # on the accuracy × size front
    config: dict[str, Any] = field(default_factory=dict)
    # A study judged by objective="robust": ``valid_acc`` is the mean of these two (engine/objective.py).
    valid_acc_clean: float | None = None
    valid_acc_shifted: float | None = None

    def key_params(self) -> str:
        """``lr=1.0e-03  batch_size=32  segment_len=128``: the training parameters worth a glance."""
        return "  ".join(f"{k.split('.')[-1]}={_short(self.config[k])}" for k in KEY_PARAMS if k in self.config)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _short(value: Any) -> str:
    return f"{value:.1e}" if isinstance(value, float) else str(value)


def leaderboard_rows(study: optuna.Study, top: int | None = None) -> list[LeaderboardRow]:
    """The completed trials by validation accuracy (ties: earlier trial first), the best ``top`` of them."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    ranked = sorted(complete, key=lambda t: (-(t.value or 0.0), t.number))
    front = {t.number for t in pareto_front([t for t in ranked if is_feasible(t)])}
    return [_row(rank, trial, trial.number in front) for rank, trial in enumerate(ranked[:top], 1)]


def _row(rank: int, trial: FrozenTrial, pareto: bool) -> LeaderboardRow:
    params, attrs = trial.params, trial.user_attrs
    size, latency, seconds = attrs.get(PARAMS_ATTR), attrs.get(LATENCY_ATTR), attrs.get("seconds")
    return LeaderboardRow(
        rank=rank, trial=trial.number, encoder=str(params.get("encoder", "?")),
        pooling=str(params.get("pooling", "?")), head=str(params.get("head", "?")), valid_acc=float(trial.value or 0.0),
        steps=attrs.get("steps"), seconds=float(seconds) if seconds is not None else None,
        n_params=int(size) if isinstance(size, int) else None,
        latency_ms=float(latency) if latency is not None else None,
        feasible=is_feasible(trial), pareto=pareto, config=dict(params),
        valid_acc_clean=_score(attrs.get("valid_acc_clean")), valid_acc_shifted=_score(attrs.get("valid_acc_shifted")))


def _score(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def front_rows(study: optuna.Study) -> list[LeaderboardRow]:
    """The accuracy × size Pareto front of the feasible completed trials, smallest model first."""
    rows = [row for row in leaderboard_rows(study) if row.pareto]
    return sorted(rows, key=lambda row: (row.n_params or 0, row.trial))


def format_size(params: int | None) -> str:
    """``1.23M``, ``45.6k`` or ``789``; empty when unknown."""
    if params is None:
        return ""
    for unit, scale in (("M", 1e6), ("k", 1e3)):
        if params >= scale:
            return f"{params / scale:.3g}{unit}"
    return str(params)


def trial_line(trial: FrozenTrial, finished: int, target: int, elapsed: float | None = None) -> str:
    """``trial 4 COMPLETE: valid 83.33%, 120 steps, 4.1 s [5/200 finished, 25 s elapsed]``."""
    if trial.state == TrialState.FAIL:
        fields = [str(trial.user_attrs.get("fail_reason", "no reason recorded"))]
    else:
        last = trial.intermediate_values.get(trial.last_step) if trial.last_step is not None else None
        value = trial.value if trial.value is not None else last
        fields = [f"valid {value:.2%}" if value is not None else "not validated"]
        if "valid_acc_shifted" in trial.user_attrs:  # objective robust: the value is the mean of the two
            fields[0] += (f" (clean {trial.user_attrs['valid_acc_clean']:.2%}, "
                          f"shifted {trial.user_attrs['valid_acc_shifted']:.2%})")
        if "pruned_reason" in trial.user_attrs:
            fields.append(str(trial.user_attrs["pruned_reason"]))
    steps = trial.user_attrs.get("steps", trial.last_step)
    if steps is not None:
        fields.append(f"{steps} steps")
    duration = trial.duration.total_seconds() if trial.duration is not None else None
    seconds = trial.user_attrs.get("seconds", duration)
    if seconds is not None:
        fields.append(f"{seconds:.1f} s")
    where = f"{finished}/{target} finished" + (f", {elapsed:.0f} s elapsed" if elapsed is not None else "")
    return f"trial {trial.number} {trial.state.name}: {', '.join(fields)} [{where}]"
