"""``automel worker``: join an existing study and run its trials beside other workers.

A worker needs nothing but the study: the study's attributes hold the frozen search space, the data set
(root, name and content fingerprint), the validation split, the steps per trial, the model scale and the
engine (target, sampler, pruner, seed, keep) that ``automel search`` recorded. The storage is the only
thing the workers share: Optuna's RDB storages (SQLite, PostgreSQL) or its journal serialise their writes,
so no trial is sampled, counted or exported twice.
"""

from __future__ import annotations

from pathlib import Path

import optuna

from automel.engine.handle import StudyHandle
from automel.engine.record import StudyRecord
from automel.engine.search import OpenedSearch, SearchOptions, attach_study
from automel.engine.study import GRACE_PERIOD
from automel.errors import StudyError
from automel.registry import Registry, default_registry
from automel.train.device import select_device


def open_worker(home: Path, name: str, url: str, data: Path | None = None, device: str = "auto",
                limit: int | None = None, grace_period: int = GRACE_PERIOD, salt: int | None = None,
                timeout: float | None = None, registry: Registry | None = None
                ) -> tuple[OpenedSearch, SearchOptions]:
    """Load study ``name`` from ``url`` with the search it was created for; check the data set is the same.

    ``data`` points at this machine's copy of the study's data set when it does not lie at the recorded
    root. ``salt`` seeds this worker's sampler apart from the others' (default 0). The process id
    is not needed and was dropped: :class:`~automel.engine.study.TrialSeededSampler` seeds each trial from
    its number, which the storage hands out once, so two workers never draw from one seed; and without a
    process id in it, a seeded worker draws trial *n* from the same seed each time, as a plain search does.
    ``registry`` (default: :func:`default_registry`, the installed plugins) must hold every plugin the
    study's space names; the worker's trials sample and build from it.
    """
    handle = StudyHandle(Path(home), name, url)  # the name is checked here
    registry = registry if registry is not None else default_registry()
    select_device(device)  # a bad --device fails before anything is opened
    try:
        loaded = handle.load()
    except StudyError as exc:
        raise StudyError(f"{exc}; start it with `automel search --study {name}`") from None
    record = StudyRecord.read(loaded)
    record.space.check_installed(registry)
    work = handle.workspace(loaded, data)
    engine = record.engine
    options = SearchOptions(trials=engine.target, study=name, storage=url, steps_per_trial=record.steps_per_trial,
                            sampler=engine.sampler, pruner=engine.pruner, device=device, seed=engine.seed,
                            keep=engine.keep, grace_period=grace_period, limit=limit, timeout=timeout,
                            sampler_salt=0 if salt is None else salt)
    study = attach_study(url, name, options, record.steps_per_trial, create=False)
    opened = OpenedSearch(study, work, record.space, handle, record.steps_per_trial, record.scale, engine.pruner,
                          registry)
    return opened, options


def study_is_done(study: optuna.Study, target: int) -> bool:
    """True when the study holds its target and no trial is running or queued: time to export."""
    from automel.engine.search import state_counts

    counts = state_counts(study)
    return counts["finished"] >= target and counts["running"] == 0 and counts["waiting"] == 0
