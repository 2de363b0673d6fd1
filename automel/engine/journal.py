"""Optuna's journal storage (``journal:PATH``) with the heartbeats that RDB storages have built in.

A journal is one append-only log file guarded by a lock file: several processes on one machine, or on a
shared file system, can share a study without a database server. Optuna's :class:`JournalStorage` has no
heartbeat, so a trial whose process died would stay RUNNING for ever. This subclass adds one through
Optuna's own :class:`~optuna.storages._heartbeat.BaseHeartbeat` interface: a running trial's heartbeat is
a wall-clock time in a system attribute, rewritten every ``heartbeat_interval`` seconds, and a RUNNING
trial silent for ``grace_period`` seconds is stale. ``optuna.storages.fail_stale_trials`` and the
stale-trial callback then work exactly as they do on RDB storages.

Workers on several machines must share a clock (NTP) for the grace period to mean the same to each.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import JournalStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock
from optuna.trial import FrozenTrial, TrialState

HEARTBEAT_ATTR = "automel:heartbeat"
JOURNAL_PREFIX = "journal:"

StaleCallback = Callable[[optuna.Study, FrozenTrial], None]


class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
    """A journal storage whose running trials beat; see the module docstring."""

    def __init__(self, path: Path, heartbeat_interval: int | None = None, grace_period: int | None = None,
                 stale_trial_callback: StaleCallback | None = None) -> None:
        # The folder must exist: ``open_storage`` refuses a missing one or creates it.
        # The open(O_EXCL) lock works on local disks and NFSv3+; the symlink lock is for older NFS.
        super().__init__(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
        self.path = path
        self._interval = heartbeat_interval
        self._grace = grace_period
        self._callback = stale_trial_callback

    def record_heartbeat(self, trial_id: int) -> None:
        # Another worker may have failed this trial as stale already; its own ``tell`` will then say so.
        with contextlib.suppress(UpdateFinishedTrialError):
            self.set_trial_system_attr(trial_id, HEARTBEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        if self._grace is None:
            return []
        now = time.time()
        stale = []
        for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            started = trial.datetime_start.timestamp() if trial.datetime_start else now
            if now - float(trial.system_attrs.get(HEARTBEAT_ATTR, started)) > self._grace:
                stale.append(trial._trial_id)
        return stale

    def get_heartbeat_interval(self) -> int | None:
        return self._interval

    def get_heartbeat_stale_trial_callback(self) -> StaleCallback | None:
        return self._callback


def journal_path(url: str) -> Path | None:
    """The file of a ``journal:PATH`` storage URL, or None for any other URL."""
    if not url.startswith(JOURNAL_PREFIX):
        return None
    return Path(url[len(JOURNAL_PREFIX):]).expanduser()
