"""``automel worker``: join an existing study and run its trials beside other workers.

A worker needs nothing but the study: the study's attributes hold the frozen search space, the data set
(root, name and content fingerprint), the validation split, the steps per trial, the model scale and the
engine (target, sampler, pruner, seed, keep) that ``automel search`` recorded. The storage is the only
thing the workers share: Optuna's RDB storages (SQLite, PostgreSQL) or its journal serialise their writes,
so no trial is sampled, counted or exported twice.
"""

from __future__ import annotations

import os
from pathlib import Path

import optuna

from automel.errors import StudyError
from automel.registry import default_registry
from automel.search.runner import ENGINE_ATTR, OpenedSearch, SearchOptions, attach_study
from automel.search.space import SearchSpace
from automel.search.study import GRACE_PERIOD, adopt_content_id, open_storage
from automel.train.device import select_device
from automel.train.run import open_workspace

REQUIRED_ATTRS = ("space", "dataset", "dataset_fingerprint", "split", "steps_per_trial", "scale", ENGINE_ATTR)


def open_worker(home: Path, name: str, url: str, data: Path | None = None, device: str = "auto",
                limit: int | None = None, grace_period: int = GRACE_PERIOD, salt: int | None = None,
                timeout: float | None = None) -> tuple[OpenedSearch, SearchOptions]:
    """Load study ``name`` from ``url`` with the search it was created for; check the data set is the same.

    ``data`` points at this machine's copy of the study's data set when it does not lie at the recorded
    root. ``salt`` seeds this worker's sampler apart from the others' (default: the process id).
    """
    select_device(device)  # a bad --device fails before anything is opened
    loaded = _load_checked(url, name)
    attrs = loaded.user_attrs
    space = SearchSpace.from_json(attrs["space"])
    space.check_installed(default_registry())
    root = Path(data) if data is not None else Path(attrs["dataset"]["root"])
    if not root.is_dir():
        raise StudyError(f"the study's data set {root} is not on this machine; pass --data DIR with a copy of it")
    work = open_workspace(root, home, split_record=attrs["split"])
    adopt_content_id(loaded, work.store)
    recorded = loaded.user_attrs["dataset_fingerprint"]
    if work.store.content_id != recorded:
        raise StudyError(f"{root} is not study '{name}''s data set: its fingerprint is {work.store.content_id}, "
                         f"the study's is {recorded}")
    engine = attrs[ENGINE_ATTR]
    steps = int(attrs["steps_per_trial"])
    options = SearchOptions(trials=int(engine["target"]), study=name, storage=url, steps_per_trial=steps,
                            sampler=engine["sampler"], pruner=engine["pruner"], device=device, seed=int(engine["seed"]),
                            keep=int(engine["keep"]), grace_period=grace_period, limit=limit, timeout=timeout,
                            sampler_salt=os.getpid() if salt is None else salt)
    study = attach_study(url, name, options, steps, create=False)
    return OpenedSearch(study, work, space, url, steps, str(attrs["scale"])), options


def _load_checked(url: str, name: str) -> optuna.Study:
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False))
    except KeyError:
        raise StudyError(f"storage {url} has no study '{name}'; start it with `automel search --study {name}`") from None
    attrs = study.user_attrs
    missing = [key for key in REQUIRED_ATTRS if key not in attrs]
    if missing:
        raise StudyError(f"study '{name}' in {url} was not created by `automel search` "
                         f"(it lacks {', '.join(missing)}); start it with `automel search` first")
    return study


def study_is_done(study: optuna.Study, target: int) -> bool:
    """True when the study holds its target and no trial is running or queued: time to export."""
    from automel.search.runner import state_counts

    counts = state_counts(study)
    return counts["finished"] >= target and counts["running"] == 0 and counts["waiting"] == 0
