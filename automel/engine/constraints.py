"""Size and latency limits of a search (``--max-params``, ``--max-latency-ms``) and the accuracy × size front.

Each trial measures its model once, right after it is built and before it trains: the parameter count, and
(with a latency limit) the median CPU time of one 3 s utterance. Both are kept as user attributes and
given to Optuna as constraints (``Trial.set_constraint``; the successor of the samplers' ``constraints_func``
in Optuna 5), so TPE and GP learn where the feasible region is, ``Study.best_trial`` only returns feasible
trials, and the pruner keeps judging the feasible ones. A model over a limit is known before it trains: it
is pruned at once (reason in ``pruned_reason``) instead of spending the budget on a model nobody can use.

The limits are part of the study (``constraints`` user attribute): a resumed search or a joining worker
applies the same ones.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState
from torch import nn

from automel.errors import ConfigError, StudyError

CONSTRAINTS_ATTR = "constraints"
PARAMS_ATTR, LATENCY_ATTR = "n_params", "latency_ms"
LATENCY_FRAMES = 300  # one 3 s utterance at the 10 ms hop of the HW4 features
LATENCY_REPEATS = 5


@dataclass(frozen=True)
class Constraints:
    """Upper limits on the model a search may return; ``None`` means no limit."""

    max_params: int | None = None
    max_latency_ms: float | None = None

    def __post_init__(self) -> None:
        if self.max_params is not None and self.max_params < 1:
            raise ConfigError(f"`max_params` must be a positive number of parameters, got {self.max_params}")
        if self.max_latency_ms is not None and not self.max_latency_ms > 0:
            raise ConfigError(f"`max_latency_ms` must be a positive number of milliseconds, got {self.max_latency_ms}")

    @property
    def active(self) -> bool:
        return self.max_params is not None or self.max_latency_ms is not None

    def to_json(self) -> dict[str, Any]:
        return {"max_params": self.max_params, "max_latency_ms": self.max_latency_ms}

    @classmethod
    def of_study(cls, study: optuna.Study) -> Constraints:
        """The limits the study was created with (none for a study made without them)."""
        return _from_json(study.user_attrs.get(CONSTRAINTS_ATTR) or {})

    def describe(self) -> str:
        parts = []
        if self.max_params is not None:
            parts.append(f"at most {self.max_params:,} parameters")
        if self.max_latency_ms is not None:
            parts.append(f"at most {self.max_latency_ms:g} ms per 3 s utterance on the CPU")
        return " and ".join(parts) or "no limits"


def settle_constraints(study: optuna.Study, wanted: Constraints) -> Constraints:
    """The limits ``study`` searches under: ``wanted`` for a new study; an existing one keeps its own.

    :class:`StudyError` when ``wanted`` sets limits that differ from the study's, or sets limits on a study
    whose trials ran without them (their sizes were never checked).
    """
    stored = study.user_attrs.get(CONSTRAINTS_ATTR)
    if stored is None:
        if wanted.active and study.get_trials(deepcopy=False):
            raise StudyError(f"study '{study.study_name}' was searched without size or latency limits; "
                             "use another `study` name for a search with them")
        study.set_user_attr(CONSTRAINTS_ATTR, wanted.to_json())
        return wanted
    current = _from_json(stored)
    if wanted.active and wanted != current:
        raise StudyError(f"study '{study.study_name}' was created with {current.describe()}, not "
                         f"{wanted.describe()}; use another `study` name for a different search")
    return current


def _from_json(stored: dict[str, Any]) -> Constraints:
    return Constraints(stored.get("max_params"), stored.get("max_latency_ms"))


def count_parameters(model: nn.Module) -> int:
    """Every parameter of the model as exported (encoder, pooling and head, classifier included)."""
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def cpu_latency_ms(model: nn.Module, n_mels: int, frames: int = LATENCY_FRAMES,
                   repeats: int = LATENCY_REPEATS) -> float:
    """Median milliseconds of ``model(x (1, frames, n_mels), mask (1, frames))`` in eval mode on the CPU.

    The model is measured where it is built (the CPU), after one warm-up call; the input comes from its own
    generator, so measuring leaves the training's random stream alone. Its train/eval mode is restored.
    """
    was_training = model.training
    model.eval()
    x = torch.randn(1, frames, n_mels, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(1, frames, dtype=torch.bool)
    try:
        model(x, mask)
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            model(x, mask)
            times.append((time.perf_counter() - started) * 1000.0)
    finally:
        model.train(was_training)
    return float(statistics.median(times))


def measure_trial(trial: optuna.Trial, model: nn.Module, n_mels: int, limits: Constraints) -> None:
    """Record the model's size (and latency, with a latency limit) on ``trial``; prune it if over a limit."""
    size = count_parameters(model)
    trial.set_user_attr(PARAMS_ATTR, size)
    over = []
    if limits.max_params is not None:
        trial.set_constraint(PARAMS_ATTR, float(size - limits.max_params))
        if size > limits.max_params:
            over.append(f"{size:,} parameters > --max-params {limits.max_params:,}")
    if limits.max_latency_ms is not None:
        latency = cpu_latency_ms(model, n_mels)
        trial.set_user_attr(LATENCY_ATTR, round(latency, 3))
        trial.set_constraint(LATENCY_ATTR, latency - limits.max_latency_ms)
        if latency > limits.max_latency_ms:
            over.append(f"{latency:.1f} ms > --max-latency-ms {limits.max_latency_ms:g}")
    if over:
        reason = "over the limit: " + "; ".join(over)
        trial.set_user_attr("pruned_reason", reason)
        raise optuna.TrialPruned(reason)


def is_feasible(trial: FrozenTrial) -> bool:
    """Whether every constraint value the trial recorded is at most 0 (a trial without any is feasible)."""
    return all(value <= 0.0 for value in trial.constraints.values())


def feasible_complete(study: optuna.Study) -> list[FrozenTrial]:
    """The study's completed, feasible trials with a value."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.value is not None and is_feasible(t)]


def pareto_front(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The accuracy × size Pareto front of ``trials``, smallest first.

    A trial is on it when no other trial is at least as accurate and at most as large, and better in one
    of the two. Trials without a recorded size (made before sizes were recorded) are left out.
    """
    sized = [t for t in trials if t.value is not None and isinstance(t.user_attrs.get(PARAMS_ATTR), int)]
    sized.sort(key=lambda t: (t.user_attrs[PARAMS_ATTR], -(t.value or 0.0), t.number))
    front: list[FrozenTrial] = []
    for trial in sized:
        if not front or (trial.value or 0.0) > (front[-1].value or 0.0):
            front.append(trial)
    return front
