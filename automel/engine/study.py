"""Opening a study: storage URL, SQLite in WAL mode, heartbeats, sampler, pruner, frozen attributes.

A study remembers, in its user attributes, what makes it *this* search: the data set (root, name,
fingerprint), the validation split, the frozen plugin lists and the steps per trial. Rerunning with a
different plugin set or another data set is a clear error rather than a silent new search.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from automel.data.store import FeatureStore, fingerprint_dataset
from automel.engine.journal import JOURNAL_PREFIX, HeartbeatJournalStorage, journal_path
from automel.errors import ConfigError, StudyError
from automel.home import MAX_STUDY_NAME
from automel.redact import redact

HEARTBEAT_INTERVAL = 10  # seconds between a running trial's heartbeats
GRACE_PERIOD = 60  # a RUNNING trial silent for this long belongs to a dead process: FAIL it and retry
MAX_RETRY = 2
SQLITE_BUSY_TIMEOUT_S = 60

SAMPLERS = ("tpe", "random", "cmaes", "gp")
PRUNERS = ("asha", "median", "hyperband", "none")
# Successive halving over training steps: rungs at a third of the last rung's steps and at all of them; the
# best third goes on. Two rungs, not more: accuracy after a few dozen steps predicts little.
RUNGS, REDUCTION = 2, 3
VALIDATIONS = 4  # per trial with the median or Hyperband pruner: each is a pruning checkpoint


def study_name_for(dataset_name: str) -> str:
    """A study name derived from the data set's name: lower-case, a valid study name (see ``check_study_name``)."""
    name = re.sub(r"[^a-z0-9._-]+", "-", dataset_name.lower())
    return name.strip("-.")[:MAX_STUDY_NAME].rstrip("-.") or "study"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the dashboard (or a second process) read while a search writes; busy_timeout makes writers
    # wait for each other instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_storage(url: str, heartbeat: bool = True, grace_period: int = GRACE_PERIOD, create_dirs: bool = False
                 ) -> optuna.storages.BaseStorage:
    """The storage behind ``url``, with heartbeats and the retry of trials whose process died.

    ``url`` is a SQLAlchemy URL (``sqlite:///…``, ``postgresql+psycopg://…``) or ``journal:PATH``. The folder
    of a SQLite database or a journal must exist: a typo in the path is refused rather than answered with a
    new, empty study somewhere else. ``create_dirs`` creates it instead (the home's own default storage,
    ``automel search --create-dirs``).

    Without ``heartbeat`` the storage is opened to read (``studies``, ``show``, ``export``, a worker's first
    look): an existing SQLite file must then already hold Optuna's tables. An empty (0-byte) or foreign
    file is an error naming it, and is left as it was: a read never writes a schema into it.
    """
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

    kwargs: dict[str, Any] = {}
    if heartbeat:
        # Beat at least three times per grace period, so a live but busy trial is never taken for dead.
        interval = max(1, min(HEARTBEAT_INTERVAL, grace_period // 3))
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; we rely on them knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        kwargs = {"heartbeat_interval": interval, "grace_period": grace_period,
                  "heartbeat_stale_trial_callback": retry}
    path = journal_path(url)
    if path is not None:
        return _open_journal(url, path, kwargs, create_dirs)
    if url.startswith("postgresql"):
        _need_postgres_driver(url)
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        check_storage_folder(url, create_dirs)
        database = _sqlite_database(url)
        if database is not None:  # this engine's own connections get the pragmas; no other engine does
            engine_kwargs["creator"] = _sqlite_creator(database)
        else:
            engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        if not heartbeat:
            _check_study_database(url)
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; we rely on them knowingly
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            for attempt in range(CREATE_RACE_RETRIES):
                try:
                    return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
                except Exception as exc:
                    if not _lost_creation_race(exc):
                        raise
                    # Another process created the schema at the same moment: it is there now.
                    time.sleep(0.5 * (attempt + 1))
            return RDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
    except Exception as exc:  # SQLAlchemy raises many kinds; the user needs the URL and the reason
        raise cannot_open(url, (str(exc).splitlines() or [type(exc).__name__])[0]) from None


def cannot_open(url: str, why: str) -> StudyError:
    """The one error of an unusable storage: its URL, with any password masked (:func:`redact`), and why."""
    return StudyError(redact(f"cannot open storage {url}: {why}"))


CREATE_RACE_RETRIES = 3
# What a new database says when two processes create Optuna's schema at once: a table that appeared
# meanwhile, or the schema version row (alembic_version) inserted twice (SQLite, PostgreSQL).
_CREATION_RACE = ("already exists", "UNIQUE constraint failed: alembic_version", "duplicate key value")


def _lost_creation_race(exc: Exception) -> bool:
    return any(sign in str(exc) for sign in _CREATION_RACE)


def _sqlite_database(url: str) -> Path | None:
    """The database file of a ``sqlite://`` URL; None for an in-memory database or a URL SQLAlchemy rejects
    (opening it then says why)."""
    from sqlalchemy.engine import make_url

    try:
        database = make_url(url).database
    except Exception:  # an unparsable URL fails, with its reason, when the storage is opened
        return None
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def storage_file(url: str) -> Path | None:
    """The file behind a SQLite or journal storage URL; None for a server (PostgreSQL), memory, or a URL
    that names no file (``journal:``)."""
    if url.startswith(JOURNAL_PREFIX):
        return journal_path(url) if url[len(JOURNAL_PREFIX):] else None
    return _sqlite_database(url) if url.startswith("sqlite") else None


def _check_study_database(url: str) -> None:
    """A SQLite study database that exists and holds Optuna's tables, read without writing a byte (a
    read-only connection); else :func:`cannot_open` saying what the file is."""
    path = _sqlite_database(url)
    if path is None or not path.exists():
        return  # a new database: the library may create a study in it (``optuna.create_study``)
    if not path.is_file():
        raise cannot_open(url, f"{path} is not a file")
    if path.stat().st_size == 0:
        raise cannot_open(url, f"{path} is empty (0 bytes): no study in it")
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise cannot_open(url, f"{path} is not a readable SQLite database ({exc})") from None
    if not {"studies", "trials"} <= tables:
        raise cannot_open(url, f"{path} is a SQLite database without Optuna's tables: not a study database")


def check_storage_folder(url: str, create: bool = False) -> None:
    """Refuse a SQLite or journal storage whose folder does not exist (most likely a typo: a new, empty
    study would start there), or create the folder when ``create``. Other URLs pass."""
    path = journal_path(url)
    if path is None and url.startswith("sqlite"):
        path = _sqlite_database(url)
    if path is not None and path.name:
        _need_folder(url, path.parent, create)


def _need_folder(url: str, folder: Path, create: bool) -> None:
    if folder.is_dir():
        return
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise cannot_open(url, f"cannot create folder {folder}: {exc.strerror}") from None
        return
    raise cannot_open(url, f"folder {folder} does not exist "
                     f"(a typo? `create_dirs` creates it)")


def _open_journal(url: str, path: Path, heartbeat: dict[str, Any], create_dirs: bool = False
                  ) -> HeartbeatJournalStorage:
    if not path.name or path.is_dir():
        raise cannot_open(url, "journal:PATH needs a file path (e.g. journal:studies/s.log)")
    check_storage_folder(url, create_dirs)
    try:
        _check_journal_head(path)
        # Constructing the storage replays the whole log, so a damaged file fails here, not mid-search.
        storage = HeartbeatJournalStorage(path, heartbeat.get("heartbeat_interval"), heartbeat.get("grace_period"),
                                          heartbeat.get("heartbeat_stale_trial_callback"))
    except Exception as exc:  # the user needs the file and the reason
        raise cannot_open(url, f"not a readable Optuna journal "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    return storage


def _check_journal_head(path: Path) -> None:
    # Optuna skips a malformed *last* line (another process may be writing it), so a file that is not a
    # journal at all would be accepted and then appended to. Its first line tells.
    if not path.exists():
        return
    with path.open("rb") as handle:
        first = handle.readline()
    if first and "op_code" not in json.loads(first):
        raise ValueError("its first line is not a journal operation")


def _need_postgres_driver(url: str) -> None:
    driver = url.split("://", 1)[0].partition("+")[2] or "psycopg2"
    try:
        __import__(driver)
    except ImportError:
        raise cannot_open(url, f"the PostgreSQL driver '{driver}' is not installed; "
                         f"pip install 'automel[postgres]' and use postgresql+psycopg://…") from None



def _sqlite_creator(database: Path) -> Callable[[], sqlite3.Connection]:
    """Connections to ``database`` for automel's own engine, each set up by :func:`_sqlite_pragmas`.

    Through ``create_engine(creator=...)``, not a listener on SQLAlchemy's ``Engine`` class: that would
    switch every SQLite database the process opens (a notebook's own) to WAL, which is stored in the file.
    ``check_same_thread`` is off as SQLAlchemy sets it for its pool: the heartbeat thread reuses connections.
    """
    def connect() -> sqlite3.Connection:
        connection = sqlite3.connect(str(database), timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)
        _sqlite_pragmas(connection, None)
        return connection

    return connect


def make_sampler(name: str, seed: int | None) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        # Multivariate + group TPE handles the conditional (per-plugin) parameters well.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=8)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        # CMA-ES covers the continuous parameters; categorical ones fall back to random sampling.
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    raise ConfigError(f"`sampler` {name!r} is unknown (choose {', '.join(SAMPLERS)})")


def trial_seed(seed: int, number: int, salt: int = 0) -> int:
    """The sampler seed of trial ``number`` of a search seeded ``seed``: well mixed, so near seeds and
    numbers give unrelated streams."""
    entropy = [seed % 2**32, number % 2**32, salt % 2**32]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


# The GP sampler's kernel fits of the last trial (objective, constraints): the next fit starts from them.
GP_WARM_START = ("_gprs_cache_list", "_constraints_gprs_cache_list")


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """The sampler ``name``, seeded afresh for every trial from ``(seed, trial number, salt)``.

    Why per trial, not per process: several processes may share one study (``automel search`` in two
    terminals, ``--workers``, ``automel worker`` on other machines). A sampler seeded per process from
    anything the processes share (the seed, the trial count when they start) makes them draw *identical*
    parameters, each process walking the same random stream; half the budget repeats work. Seeding from the
    process id or the clock would separate them but make a seeded search irreproducible, and salting "only
    when another process is there" races when both start at once. The trial *number* needs none of this:
    the storage hands each number out once, atomically, whichever process asks. So:

    - two processes on one study never sample two trials from the same seed;
    - one process, run twice from scratch with one seed, gives trial *n* the same seed and (its training
      being deterministic) the same history, so it draws the same parameters;
    - a resumed search goes on with new numbers and never replays the first run's random start-up trials.

    ``salt`` separates further (a worker's index); 0 leaves a plain search reproducible. Before each trial
    the inner sampler is rebuilt; every sampler used here keeps its state in the study (CMA-ES) or rebuilds it
    from the trials (TPE, GP, random). The GP's one piece of state across trials, the kernel fit it starts
    the next fit from (a warm start, :data:`GP_WARM_START`), is handed from the old inner sampler to the new.
    """

    def __init__(self, name: str, seed: int, salt: int = 0) -> None:
        self.name, self.seed, self.salt = name, seed, salt
        self._inner = make_sampler(name, trial_seed(seed, -1, salt))  # -1: before any trial; checks the name

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        previous = self._inner
        self._inner = make_sampler(self.name, trial_seed(self.seed, trial.number, self.salt))
        for name in GP_WARM_START:  # private in Optuna 5 (GPSampler); absent elsewhere: then nothing to carry
            if getattr(previous, name, None) is not None and hasattr(self._inner, name):
                setattr(self._inner, name, getattr(previous, name))
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
                        ) -> dict[str, Any]:
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()


def rung_steps(steps: int) -> list[int]:
    """The steps at which successive halving compares trials: ``steps / 3**k``, the last being ``steps``."""
    first = max(1, steps // REDUCTION ** (RUNGS - 1))
    return [first * REDUCTION**k for k in range(RUNGS - 1)] + [steps]


def make_pruner(name: str, steps: int) -> optuna.pruners.BasePruner:
    """``asha`` (the default): Optuna's asynchronous successive halving over training steps.

    Of the trials that reach a rung, the best third go on to the next; the rest stop there. It needs no
    synchronisation, so workers sharing a study use it unchanged (Li et al. 2020, "A system for massively
    parallel hyperparameter tuning").
    """
    if name == "asha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=rung_steps(steps)[0],
                                                      reduction_factor=REDUCTION, min_early_stopping_rate=0)
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=max(1, steps // 4))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=max(1, steps // 8), max_resource=steps,
                                              reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError(f"`pruner` {name!r} is unknown (choose {', '.join(PRUNERS)})")


def adopt_content_id(study: optuna.Study, store: FeatureStore) -> None:
    """Studies made before content ids recorded the path-and-mtime fingerprint (cache version 1). If that
    is this data set's, the study is about this very data: record its content id instead."""
    recorded = study.user_attrs.get("dataset_fingerprint")
    if recorded not in (None, store.content_id) and recorded == fingerprint_dataset(store.dataset.root, version=1):
        study.set_user_attr("dataset_fingerprint", store.content_id)
