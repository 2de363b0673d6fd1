"""``automel search``: run trials until the study holds the requested number of finished ones.

Finished means COMPLETE or PRUNED. Rerunning the same command resumes; a trial left RUNNING by a killed
process is failed by Optuna's heartbeat check and its parameters re-queued. A trial that raises is marked
FAIL with its reason in ``fail_reason`` and the search goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automel.data.split import Split
from automel.errors import StudyError
from automel.plugin import using_search_scale
from automel.registry import default_registry
from automel.search.artifacts import artifact_store, save_trial_artifacts, trim_weights
from automel.search.space import SearchSpace, make_space, suggest_params
from automel.search.study import (
    GRACE_PERIOD,
    artifact_dir,
    check_frozen,
    default_storage,
    make_pruner,
    make_sampler,
    open_storage,
    study_name_for,
)
from automel.train.config import RunSettings
from automel.train.device import release_memory, select_device
from automel.train.run import Workspace, open_workspace, train_run

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
CPU_STEPS, CUDA_STEPS = 200, 2000
MAX_CONSECUTIVE_FAILURES = 5
VALIDATIONS = 4  # per trial: each is a pruning checkpoint; more of them cost validation time


@dataclass(frozen=True)
class SearchOptions:
    trials: int = 50
    study: str | None = None
    storage: str | None = None
    steps_per_trial: int | None = None  # None: CPU_STEPS on CPU, CUDA_STEPS on a GPU
    timeout: float | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    encoders: list[str] | None = None
    poolings: list[str] | None = None
    heads: list[str] | None = None
    device: str = "auto"
    seed: int = 0
    keep: int = 5
    grace_period: int = GRACE_PERIOD


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
    storage: str
    home: Path
    interrupted: bool = False
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.study.study_name


def state_counts(study: optuna.Study) -> dict[str, int]:
    counts = {s.name.lower(): 0 for s in TrialState}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name.lower()] += 1
    counts["finished"] = counts["complete"] + counts["pruned"]
    return counts


@dataclass
class OpenedSearch:
    """A study ready to run: its data, its frozen space, and the budget and scale it was created with."""

    study: optuna.Study
    work: Workspace
    space: SearchSpace
    url: str
    steps: int
    scale: str


def open_search(root: Path, home: Path, options: SearchOptions) -> OpenedSearch:
    """Create or load the study and check that it is the same search (data set, plugins, budget, scale).

    Every option is validated before the storage is touched, so a bad command leaves nothing behind.
    """
    registry = default_registry()
    device = select_device(options.device)
    steps = options.steps_per_trial or (CPU_STEPS if device.type == "cpu" else CUDA_STEPS)
    scale = "cpu" if device.type == "cpu" else "gpu"
    pruner = make_pruner(options.pruner, steps)
    make_sampler(options.sampler, options.seed)  # validates the name; the real one is seeded below
    chosen = options.encoders or options.poolings or options.heads
    requested = make_space(options.encoders, options.poolings, options.heads, registry)
    work = open_workspace(root, home, split_seed=options.seed)
    name = options.study or study_name_for(work.store.dataset.name)
    url = options.storage or default_storage(home, name)
    storage = open_storage(url, grace_period=options.grace_period)
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize", load_if_exists=True,
                                sampler=make_sampler(options.sampler, _sampler_seed(options.seed, storage, name)),
                                pruner=pruner)
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
    info = work.dataset_info()
    check_frozen(study, {"dataset_fingerprint": info["fingerprint"], "space": space.to_json(),
                         "steps_per_trial": steps, "scale": scale})
    check_frozen(study, {"dataset": {k: info[k] for k in ("root", "name", "kind")},
                         "split": work.split.to_json(work.store.paths)})
    return OpenedSearch(study, work, space, url, steps, scale)


def _sampler_seed(seed: int, storage: optuna.storages.BaseStorage, name: str) -> int:
    # A resumed search must not replay the first run's random start-up trials: offset by trials so far.
    try:
        return seed + len(storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False))
    except KeyError:
        return seed


def run_search(root: Path, home: Path, options: SearchOptions, events: SearchEvents | None = None) -> SearchOutcome:
    """Open (or resume) the study and run trials until it holds ``options.trials`` finished ones."""
    return run_trials(open_search(root, home, options), home, options, events)


def run_trials(opened: OpenedSearch, home: Path, options: SearchOptions, events: SearchEvents | None = None
               ) -> SearchOutcome:
    events = events or SearchEvents()
    study, work, space, steps = opened.study, opened.work, opened.space, opened.steps
    device = select_device(options.device)
    store = artifact_store(artifact_dir(home, study.study_name))
    outcome = SearchOutcome(study, opened.url, home)
    events.on_start(study, steps)

    def objective(trial: optuna.Trial) -> float:
        with using_search_scale(opened.scale):
            params = suggest_params(trial, space)
        seed = options.seed * 100_003 + trial.number
        trial.set_user_attr("seed", seed)
        events.on_trial_start(trial.number, params)
        settings = RunSettings(steps=steps, valid_every=max(1, steps // VALIDATIONS), seed=seed, device=options.device)
        try:
            model, result, record = train_run(params, work, settings, device, [_pruning(trial)], events.on_progress)
        except KeyboardInterrupt:
            trial.set_user_attr("fail_reason", "interrupted by the user (Ctrl-C)")
            raise
        except Exception as exc:
            trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            raise
        finally:
            release_memory(device)
        trial.set_user_attr("steps", result.steps)
        trial.set_user_attr("seconds", round(result.seconds, 2))
        trial.set_user_attr("best_step", result.best_step)
        if result.stopped_by_callback:
            raise optuna.TrialPruned(f"pruned at step {result.steps}")
        save_trial_artifacts(trial, store, model.state_dict(), record)
        return result.best_valid_acc

    def after_trial(study: optuna.Study, trial: FrozenTrial) -> None:
        if trial.state == TrialState.COMPLETE:
            trim_weights(study, store, options.keep)
        events.on_trial_end(study, trial)

    started, failures_in_a_row = time.monotonic(), 0
    try:
        while state_counts(study)["finished"] < options.trials:
            remaining = None if options.timeout is None else options.timeout - (time.monotonic() - started)
            if remaining is not None and remaining <= 0:
                break
            before = state_counts(study)["fail"]
            study.optimize(objective, n_trials=1, catch=(Exception,), callbacks=[after_trial])
            failures_in_a_row = failures_in_a_row + 1 if state_counts(study)["fail"] > before else 0
            if failures_in_a_row >= MAX_CONSECUTIVE_FAILURES:
                last = study.get_trials(deepcopy=False)[-1].user_attrs.get("fail_reason", "unknown")
                raise StudyError(f"{MAX_CONSECUTIVE_FAILURES} trials failed in a row; last: {last}")
    except KeyboardInterrupt:
        outcome.interrupted = True
    outcome.counts = state_counts(study)
    return outcome


def _pruning(trial: optuna.Trial) -> Callable[[int, dict[str, float]], bool]:
    def report(step: int, metrics: dict[str, float]) -> bool:
        trial.report(metrics["valid_acc"], step)
        return trial.should_prune()

    return report


def load_study(home: Path, study: str | None, storage: str | None) -> optuna.Study:
    """An existing study by name (the only one in the home directory when no name is given)."""
    if study is None:
        names = sorted(p.stem for p in home.glob("*.db"))
        if len(names) != 1:
            raise StudyError(f"{home}: {'no studies' if not names else 'several studies'}; pass --study NAME"
                             + (f" (one of {', '.join(names)})" if names else ""))
        study = names[0]
    url = storage or default_storage(home, study)
    if storage is None and not (home / f"{study}.db").exists():
        raise StudyError(f"no study '{study}' in {home} (run `automel studies` to list them)")
    try:
        return optuna.load_study(study_name=study, storage=open_storage(url, heartbeat=False))
    except KeyError:
        raise StudyError(f"storage {url} has no study '{study}'") from None
