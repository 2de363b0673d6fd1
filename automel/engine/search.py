"""``automel search``: open the study, then run trials until the target, the deadline or Ctrl-C.

Finished means COMPLETE or PRUNED. Rerunning the same command resumes; a trial left RUNNING by a killed
process is failed by Optuna's heartbeat check and its parameters re-queued. A trial that raises is marked
FAIL with its reason in ``fail_reason`` and the search goes on.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automel.data.layout import read_dataset
from automel.data.split import Split
from automel.engine.artifacts import artifact_store, trim_weights
from automel.engine.banks import record_banks
from automel.engine.constraints import Constraints, settle_constraints
from automel.engine.cost import MAX_COST_RATIO
from automel.engine.counting import FINISHED, is_surplus, state_counts
from automel.engine.handle import StudyHandle
from automel.engine.objective import TrialObjective
from automel.engine.record import DatasetRef, EngineRecord, StudyRecord, check_frozen, settle_objective
from automel.engine.space import SearchSpace, make_space
from automel.engine.study import (
    GRACE_PERIOD,
    TrialSeededSampler,
    adopt_content_id,
    check_storage_folder,
    make_pruner,
    make_sampler,
    open_storage,
    study_name_for,
)
from automel.errors import ConfigError, DataError, PluginError, StudyError
from automel.home import check_study_name
from automel.registry import Registry, default_registry
from automel.train.device import select_device
from automel.train.fit import Workspace, open_workspace
from automel.train.shift import OBJECTIVES

CPU_STEPS, CUDA_STEPS = 200, 2000  # the last rung when neither --steps-per-trial nor a time limit sizes it
MAX_CONSECUTIVE_FAILURES = 5
WAIT_POLL_S = 2.0  # how often a worker with nothing to run looks at the study again


@dataclass(frozen=True)
class SearchOptions:
    trials: int = 50  # finished trials the study should hold (its target; a cap under a time limit)
    study: str | None = None
    storage: str | None = None
    steps_per_trial: int | None = None  # the last rung; None: sized by the time limit, else CPU/CUDA_STEPS
    timeout: float | None = None  # a worker's own limit: start no trial after this many seconds
    sampler: str = "tpe"
    pruner: str = "asha"
    encoders: list[str] | None = None
    poolings: list[str] | None = None
    heads: list[str] | None = None
    device: str = "auto"
    seed: int = 0
    keep: int = 5
    grace_period: int = GRACE_PERIOD
    limit: int | None = None  # a worker's own budget: stop after finishing this many trials
    sampler_salt: int = 0  # a worker's extra sampler salt; trial numbers already separate processes
    portfolio: bool = True  # start a new study with the portfolio of known-good configurations
    deterministic: bool = False  # deterministic kernels only (RunSettings.deterministic)
    create_dirs: bool = False  # create a missing folder of --storage (SQLite, journal) instead of refusing it
    # --max-params, --max-latency-ms (a new study's; see settle_constraints)
    constraints: Constraints = field(default_factory=Constraints)
    noise: Path | None = None  # --noise DIR: a noise bank for train.noise_aug (automel.engine.banks)
    rir: Path | None = None  # --rir DIR: recorded impulse responses for train.reverb_aug
    max_cost_ratio: float | None = MAX_COST_RATIO  # prune a trial this many times slower per step (engine/cost.py)
    objective: str | None = None  # clean | robust (train/shift.py); None: the study's own, else clean


@dataclass
class SearchEvents:
    """Hooks for a live view; all optional."""

    on_start: Callable[[optuna.Study, int], None] = lambda study, steps: None
    on_trial_start: Callable[[int, dict[str, Any]], None] = lambda number, params: None
    on_progress: Callable[[int, dict[str, float]], None] = lambda step, metrics: None
    on_trial_end: Callable[[optuna.Study, FrozenTrial], None] = lambda study, trial: None


@dataclass
class SearchOutcome:
    study: optuna.Study
    interrupted: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    finished_here: int = 0  # trials this process finished
    stopped_because: str | None = None  # set when ``stop_early`` ended the search


class Action(enum.Enum):
    """What a search process does next."""

    RUN = "run"  # start a trial
    WAIT = "wait"  # the remaining trials run elsewhere: wait for them, or for their heartbeats to lapse
    STOP = "stop"


@dataclass
class OpenedSearch:
    """A study ready to run: its data, its frozen space, and the budget and scale it was created with.

    ``registry`` holds the plugins that the space names: the trials of this search sample and build from it.
    """

    study: optuna.Study
    work: Workspace
    space: SearchSpace
    handle: StudyHandle
    steps: int
    scale: str
    pruner: str = "asha"
    registry: Registry = field(default_factory=default_registry)
    objective: str = "clean"  # what trial values measure (engine/record.py settle_objective)

    @property
    def url(self) -> str:
        return self.handle.url


# Sizes the last rung of a new study (from the time limit): (workspace, space, scale) -> steps.
StepPlanner = Callable[[Workspace, SearchSpace, str], int]


def open_search(root: Path, home: Path, options: SearchOptions, plan_steps: StepPlanner | None = None,
                registry: Registry | None = None, on_progress: Callable[[int, int], None] | None = None
                ) -> OpenedSearch:
    """Create or load the study and check that it is the same search (data set, plugins, budget, scale).

    Every option is validated before the storage is touched, so a bad command leaves nothing behind.
    The home's default storage (``<home>/<study>.db``) is created as needed; the folder of an explicit
    ``options.storage`` must exist unless ``options.create_dirs``.
    ``plan_steps`` sizes the last rung of a *new* study (from a time limit); an existing study keeps its own.
    ``registry`` (default: :func:`default_registry`, the installed plugins) is the one the whole search uses.
    """
    registry = registry if registry is not None else default_registry()
    device = select_device(options.device)
    scale = "cpu" if device.type == "cpu" else "gpu"
    make_pruner(options.pruner, CPU_STEPS)  # validates the names; the real ones are made in attach_study
    make_sampler(options.sampler, options.seed)
    if options.objective is not None and options.objective not in OBJECTIVES:
        raise ConfigError(f"objective {options.objective!r} is not one of: {', '.join(OBJECTIVES)}")
    if options.study is not None:
        check_study_name(options.study)
    if options.storage is not None:
        check_storage_folder(options.storage, options.create_dirs)  # a typo fails before the data set is read
    chosen = options.encoders or options.poolings or options.heads
    try:
        requested = make_space(options.encoders, options.poolings, options.heads, registry)
    except PluginError:
        _check_existing_space(root, home, options, registry)  # a resumed study says which plugin *it* needs
        raise
    work = open_workspace(root, home, split_seed=options.seed, on_progress=on_progress)  # the cache build's
    if work.scored_on != "valid":
        raise DataError(f"{root}: every speaker has a single labelled utterance, so none is left to validate "
                        f"on; a search ranks trials on validation accuracy (one model can still be trained, scored "
                        f"on its training utterances)")
    handle = StudyHandle(home, options.study or study_name_for(work.store.dataset.name), options.storage)
    study = attach_study(handle.url, handle.name, options, options.steps_per_trial or CPU_STEPS, create=True)
    settle_constraints(study, options.constraints)
    objective = settle_objective(study, options.objective)
    space = requested
    if "space" in study.user_attrs:  # an existing study: its space, split and scale are fixed
        space = SearchSpace.from_json(study.user_attrs["space"])
        space.check_installed(registry)
        if chosen and requested != space:
            check_frozen(study, {"space": requested.to_json()})
        if "split" in study.user_attrs:  # the same store, with the split the study recorded
            work = Workspace(work.store, Split.from_json(study.user_attrs["split"], work.store.paths,
                                                         work.store.labels.numpy()))
        scale = study.user_attrs.get("scale", scale)  # model ranges stay those the study began with
    adopt_content_id(study, work.store)
    steps = _steps_for(study, options, device.type, lambda: plan_steps(work, space, scale) if plan_steps else None)
    info = work.dataset_info()
    record = StudyRecord(space=space, dataset=DatasetRef(info["root"], info["name"], info["kind"]),
                         content_id=info["fingerprint"], split=work.split.to_json(work.store.paths),
                         steps_per_trial=steps, scale=scale,
                         engine=EngineRecord(options.trials, options.sampler, options.pruner, options.seed,
                                             options.keep))
    record.write(study)
    record_banks(study, options.noise, options.rir, work, home)
    study.pruner = make_pruner(options.pruner, steps)
    if options.portfolio and not study.get_trials(deepcopy=False):
        from automel.engine.portfolio import enqueue_portfolio

        enqueue_portfolio(study, space, scale, registry)
    return OpenedSearch(study, work, space, handle, steps, scale, options.pruner, registry, objective)


def _steps_for(study: optuna.Study, options: SearchOptions, device_type: str, planned: Callable[[], int | None]
               ) -> int:
    """The last rung: the study's own, else ``--steps-per-trial``, else planned from the time limit."""
    if "steps_per_trial" in study.user_attrs:
        return options.steps_per_trial or int(study.user_attrs["steps_per_trial"])  # a mismatch is refused later
    if options.steps_per_trial:
        return options.steps_per_trial
    return planned() or (CPU_STEPS if device_type == "cpu" else CUDA_STEPS)


def _check_existing_space(root: Path, home: Path, options: SearchOptions, registry: Registry) -> None:
    """If the command resumes a study, check the study's own plugin list (without creating anything)."""
    handle = StudyHandle(home, options.study or study_name_for(read_dataset(root).name), options.storage)
    if not handle.exists():
        return
    try:
        study = handle.load()
    except StudyError:
        return
    if "space" in study.user_attrs:
        SearchSpace.from_json(study.user_attrs["space"]).check_installed(registry)


def attach_study(url: str, name: str, options: SearchOptions, steps: int, create: bool) -> optuna.Study:
    """The study ``name`` in ``url`` with this process's sampler and pruner (created if ``create``).

    The sampler seeds each trial from its number (:class:`TrialSeededSampler`): processes sharing the study
    draw different parameters, and one seeded process draws the same ones each time it runs from scratch.
    """
    check_study_name(name)
    storage = open_storage(url, grace_period=options.grace_period,
                           create_dirs=options.create_dirs or options.storage is None)  # None: the home's own
    sampler = TrialSeededSampler(options.sampler, options.seed, options.sampler_salt)
    pruner = make_pruner(options.pruner, steps)
    if create:
        created = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True,
                                      sampler=sampler, pruner=pruner)
        with warnings.catch_warnings():  # "experimental" in Optuna; the dashboard and plots then say what it is
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            created.set_metric_names(["validation accuracy"])
        return created
    try:
        return optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        raise StudyError(f"storage {url} has no study '{name}'") from None


class _HideSurplus(logging.Filter):
    """Optuna logs every failed trial with its traceback; a surplus trial is no failure worth one."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SurplusTrial" not in record.getMessage()


@contextlib.contextmanager
def _surplus_hidden() -> Iterator[None]:
    """The filter on Optuna's logger for the trials' duration only: a process that imports automel keeps
    Optuna's logging as it was."""
    logger, hide = optuna.logging.get_logger("optuna.study._optimize"), _HideSurplus()
    logger.addFilter(hide)
    try:
        yield
    finally:
        logger.removeFilter(hide)


def run_trials(opened: OpenedSearch, home: Path, options: SearchOptions, events: SearchEvents | None = None,
               deadline: float | None = None, stop_early: Callable[[optuna.Study], str | None] | None = None
               ) -> SearchOutcome:
    """Run trials until the study holds ``options.trials`` finished ones, ``options.limit`` finished here,
    the monotonic ``deadline`` passes (a trial still training then is cut and counts as pruned), or
    ``stop_early`` gives a reason to stop (checked between trials).

    Several processes may run this on one study: each trial first checks that the trials ahead of it
    (by number) do not already cover the target, so the study ends with exactly the target; and a
    process waits, rather than leaving, while other processes' trials could still fail and need a retry.
    """
    events = events or SearchEvents()
    study = opened.study
    store = artifact_store(opened.handle.artifacts)
    outcome = SearchOutcome(study)
    started = time.monotonic()
    if options.timeout is not None:
        deadline = min(deadline or float("inf"), started + options.timeout)
    objective = TrialObjective(opened, options, store, events, deadline)
    events.on_start(study, opened.steps)
    failed: list[str | None] = []  # per trial run here: its fail reason, or None if it did not fail

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        real_failure = trial.state == TrialState.FAIL and not is_surplus(trial)
        failed.append(str(trial.user_attrs.get("fail_reason", "unknown")) if real_failure else None)
        if trial.state == TrialState.COMPLETE:
            trim_weights(study, store, options.keep)
        if trial.state in FINISHED:
            outcome.finished_here += 1
        events.on_trial_end(study, trial)

    with _surplus_hidden():  # Optuna's logger filtered while the trials run, not for the process
        failures_in_a_row = 0
        try:
            while (action := next_action(study, options, outcome, deadline)) is not Action.STOP:
                outcome.stopped_because = stop_early(study) if stop_early is not None else None
                if outcome.stopped_because is not None:
                    break
                if action is Action.WAIT:
                    _fail_stale(study)
                    time.sleep(WAIT_POLL_S)
                    continue
                try:
                    study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[after_trial])
                except ValueError as exc:
                    if "Cannot tell a" not in str(exc):
                        raise
                    # Another worker took this trial for dead (its heartbeats came too late), failed it and
                    # queued a retry; the retry counts, this run does not.
                    failed.append(TAKEN_OVER)
                failures_in_a_row = failures_in_a_row + 1 if failed and failed[-1] is not None else 0
                if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
                    raise StudyError(f"{MAX_CONSECUTIVE_FAILURES} trials failed in a row; last: {failed[-1]}")
        except KeyboardInterrupt:
            outcome.interrupted = True
    outcome.counts = state_counts(study)
    return outcome


TAKEN_OVER = "taken over by another worker: its heartbeats came too late"


def next_action(study: optuna.Study, options: SearchOptions, outcome: SearchOutcome, deadline: float | None
                ) -> Action:
    counts = state_counts(study)
    if counts["finished"] >= options.trials:
        return Action.STOP
    if options.limit is not None and outcome.finished_here >= options.limit:
        return Action.STOP
    if deadline is not None and time.monotonic() >= deadline and counts["finished"] > 0:
        return Action.STOP  # past the deadline, but never before a first trial: without one, nothing to export
    if counts["waiting"] == 0 and counts["finished"] + counts["running"] >= options.trials:
        return Action.WAIT
    return Action.RUN


def _fail_stale(study: optuna.Study) -> None:
    with warnings.catch_warnings():  # experimental in Optuna; the same call optimize() makes per trial
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
