"""The study's saved state, in one typed home: what makes a study *this* search, and how workers join it.

``automel search`` writes a :class:`StudyRecord` once into the study's user attributes; the search, every
``automel worker``, ``automel export`` and ``automel refit`` read it back with :meth:`StudyRecord.read`.
The attribute keys are those earlier versions wrote, so their studies resume and export unchanged
(``dataset_fingerprint`` holds the data set's *content id*, see :mod:`automel.data.store`).

Frozen fields (the space, the data set, its content id, the split, the steps and the scale) may never
change: a command that disagrees is refused rather than silently starting another search. The engine
(target, sampler, pruner, seed, keep) may change with each command; workers take the latest.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import optuna

from automel.engine.space import SearchSpace
from automel.errors import StudyError

SPACE, DATASET, CONTENT_ID, SPLIT, STEPS, SCALE, ENGINE = (
    "space", "dataset", "dataset_fingerprint", "split", "steps_per_trial", "scale", "engine")
REQUIRED = (SPACE, DATASET, CONTENT_ID, SPLIT, STEPS, SCALE, ENGINE)
BUDGET_LOG = "budget_runs"  # one entry per time-limited command: its phases and their seconds


@dataclass(frozen=True)
class DatasetRef:
    """Where the study's data set lay when the study began, its name and kind (``real``/``synthetic``)."""

    root: str
    name: str
    kind: str


@dataclass(frozen=True)
class EngineRecord:
    """How trials are drawn and judged; a later command may change it, and joining workers follow it."""

    target: int
    sampler: str
    pruner: str
    seed: int
    keep: int


@dataclass(frozen=True)
class StudyRecord:
    space: SearchSpace
    dataset: DatasetRef
    content_id: str
    split: dict[str, Any]
    steps_per_trial: int
    scale: str
    engine: EngineRecord

    @classmethod
    def read(cls, study: optuna.Study) -> StudyRecord:
        """The record of a study made by ``automel search``; :class:`StudyError` naming what is missing."""
        attrs = study.user_attrs
        missing = [key for key in REQUIRED if key not in attrs]
        if missing:
            raise StudyError(f"study '{study.study_name}' was not created by `automel search` "
                             f"(it lacks {', '.join(missing)}); start it with `automel search` first")
        dataset = attrs[DATASET]
        return cls(space=SearchSpace.from_json(attrs[SPACE]),
                   dataset=DatasetRef(str(dataset["root"]), str(dataset["name"]), str(dataset["kind"])),
                   content_id=str(attrs[CONTENT_ID]), split=dict(attrs[SPLIT]),
                   steps_per_trial=int(attrs[STEPS]), scale=str(attrs[SCALE]),
                   engine=EngineRecord(**{k: attrs[ENGINE][k]
                                          for k in ("target", "sampler", "pruner", "seed", "keep")}))

    def write(self, study: optuna.Study) -> None:
        """Record the frozen fields on a new study (refusing any that differ on an old one), then the engine."""
        check_frozen(study, {CONTENT_ID: self.content_id, SPACE: self.space.to_json(), STEPS: self.steps_per_trial,
                             SCALE: self.scale})
        check_frozen(study, {DATASET: asdict(self.dataset), SPLIT: self.split})
        study.set_user_attr(ENGINE, asdict(self.engine))


def check_frozen(study: optuna.Study, frozen: dict[str, Any]) -> None:
    """Record ``frozen`` attributes on a new study; on an old one, refuse any that differ."""
    attrs = study.user_attrs
    for key, value in frozen.items():
        if key not in attrs:
            study.set_user_attr(key, value)
        elif attrs[key] != value:
            raise StudyError(f"study '{study.study_name}' was created with {key} = {_short(attrs[key])}, "
                             f"not {_short(value)}; use another `study` name for a different search")


OBJECTIVE = "objective"  # what a trial's value measures: clean, or robust (train/shift.py); frozen
DEFAULT_OBJECTIVE = "clean"


def settle_objective(study: optuna.Study, wanted: str | None) -> str:
    """The objective ``study`` judges trials by: ``wanted`` (default :data:`DEFAULT_OBJECTIVE`) for a new
    study; an existing one keeps its own (a study from before objectives existed is ``clean``).

    :class:`StudyError` when ``wanted`` differs: trials scored otherwise cannot be ranked together.
    """
    stored = study.user_attrs.get(OBJECTIVE)
    if stored is None:
        stored = DEFAULT_OBJECTIVE if study.get_trials(deepcopy=False) else (wanted or DEFAULT_OBJECTIVE)
        study.set_user_attr(OBJECTIVE, stored)
    if wanted is not None and wanted != stored:
        raise StudyError(f"study '{study.study_name}' judges its trials by the {stored} objective, not {wanted}; "
                         f"use another study name for a search judged by {wanted}")
    return str(stored)


def append_budget_run(study: optuna.Study, entry: dict[str, Any]) -> None:
    """Add one command's budget accounting to the study (kept for ``automel show`` and the tests)."""
    runs = list(study.user_attrs.get(BUDGET_LOG, []))
    runs.append(entry)
    study.set_user_attr(BUDGET_LOG, runs)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) < 120 else text[:117] + "..."
