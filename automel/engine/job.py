"""The whole search job under one time limit: open the study, run the trials (here or in worker processes),
then ensemble, refit and export. ``automel search`` and :func:`automel.engine` are thin layers over
:func:`run_search_job`; what they show comes through :class:`SearchHooks` (library code never prints).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from automel.engine.budget import Clock, Quality, chance_stop, check_time_limit, step_planner
from automel.engine.finish import FinishOptions, FinishResult, Note, finish_study
from automel.engine.record import append_budget_run
from automel.engine.search import OpenedSearch, SearchEvents, SearchOptions, open_search, run_trials, state_counts
from automel.errors import Interrupted, StudyError
from automel.train.device import select_device

RESUME = "the study is consistent; rerun the same command to resume"


def _nothing(*_: Any) -> None:
    return None


PROGRESS_AFTER_S = 2.0  # work shorter than this says nothing: its lines would only crowd an error or a result


def counted_lines(say: Note, what: str, unit: str) -> Callable[[int, int], None]:
    """A ``(done, total)`` reporter that says ``what: 6,000/60,000 unit`` at every tenth and at the end,
    once the work has run :data:`PROGRESS_AFTER_S` seconds since its first report."""
    said, first = [-1], [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        first[0] = first[0] or now
        tenth = 10 if done >= total else done * 10 // max(total, 1)
        if tenth > said[0] and now - first[0] >= PROGRESS_AFTER_S:
            say(f"{what}: {done:,}/{total:,} {unit}")
            said[0] = tenth

    return report


@dataclass
class SearchHooks:
    """What a user interface sees of a search job; every hook is optional.

    ``note``: lines always worth showing (the refit's plan, an early stop); ``aside``: diagnostics beside the
    results (where worker logs are, a worker that died; the CLI's stderr); ``phase``: progress lines
    (search started, refit done) that a live view shows in its own way; ``events``: per trial (see
    :class:`SearchEvents`); ``watching``: a context around the trials (the CLI's live view); ``refresh``:
    called about once a second while worker processes run the trials; ``on_search_end``: after the trials,
    before the refit, also when the search was interrupted; ``cache_progress``: a first feature-cache build.
    """

    note: Note = _nothing
    aside: Note = _nothing
    phase: Note = _nothing
    events: SearchEvents = field(default_factory=SearchEvents)
    watching: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
    refresh: Callable[[optuna.Study], None] = _nothing
    on_search_end: Callable[[optuna.Study, str], None] = _nothing
    cache_progress: Callable[[int, int], None] = _nothing  # (done, total) utterances of a feature-cache build


@dataclass(frozen=True)
class SearchJob:
    """One search job: the data set, where studies live, the study's options and the time limit."""

    data: Path
    home: Path
    options: SearchOptions
    limit_s: float
    quality: Quality
    refit: bool = True
    workers: int = 1
    formats: tuple[str, ...] = ()  # deployable files written into the export too
    adapt: str = "none"  # none | test | a folder of unlabelled target data (automel.adapt)


@dataclass(frozen=True)
class SearchRun:
    """What a finished job produced: the study, its export, and how the time went."""

    study: optuna.Study
    url: str
    home: Path
    data: Path  # the data set searched
    export: FinishResult
    elapsed_s: float
    limit_s: float
    stopped_because: str | None = None  # the search ended early (no better than chance could come)


def run_search_job(job: SearchJob, hooks: SearchHooks | None = None, clock: Clock | None = None) -> SearchRun:
    """Search, then ensemble, refit and export, within ``job.limit_s`` counted from ``clock`` (default: now).

    :class:`Interrupted` after Ctrl-C or SIGTERM: every finished trial, and any earlier export, is kept.
    """
    from automel.registry import default_registry

    hooks = hooks or SearchHooks()
    check_time_limit(job.limit_s)
    clock = clock or Clock(job.limit_s, job.quality, refit=job.refit)
    registry = default_registry()  # one registry for the whole search: calibration, space and trials
    planner = step_planner(clock, select_device(job.options.device), registry)
    opened = open_search(job.data, job.home, job.options, plan_steps=planner, registry=registry,
                         on_progress=hooks.cache_progress)
    _say_who_is_not_validated(opened, hooks)
    interrupted, stopped_because = _run_trials(job, opened, hooks, clock.search_deadline())
    clock.record("search", clock.elapsed())
    if not interrupted and stopped_because is None:
        _say_why_the_search_ended(opened.study, job, hooks)
    hooks.on_search_end(opened.study, opened.url)
    if interrupted:
        raise Interrupted(RESUME)
    result = _finish(opened, job, clock, hooks)
    return SearchRun(opened.study, opened.url, job.home, job.data, result, clock.elapsed(), clock.limit_s,
                     stopped_because)


def _run_trials(job: SearchJob, opened: OpenedSearch, hooks: SearchHooks, deadline: float) -> tuple[bool, str | None]:
    """Run the trials here or in ``job.workers`` processes: (interrupted, why the search ended early)."""
    if job.workers > 1:
        timed = dataclasses.replace(job.options, timeout=max(1.0, deadline - time.monotonic()))
        return run_in_workers(opened, job.home, timed, job.workers, job.data, hooks), None
    store = opened.work.store
    # Without a refit there is nothing better to do with the time than to keep searching.
    stop_early = chance_stop(len(opened.work.split.valid), store.num_classes) if job.refit else None
    with hooks.watching():
        outcome = run_trials(opened, job.home, job.options, hooks.events, deadline=deadline, stop_early=stop_early)
    if outcome.stopped_because:
        hooks.note(f"search ended early: {outcome.stopped_because}")
    return outcome.interrupted, outcome.stopped_because


def _say_who_is_not_validated(opened: OpenedSearch, hooks: SearchHooks) -> None:
    """Speakers with one labelled utterance train, but validation cannot score them: say which."""
    store = opened.work.store
    missing = opened.work.split.unvalidated(store.labels.numpy())
    if len(missing):
        names = [store.dataset.speakers[i] for i in missing.tolist()]
        listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        hooks.note(f"{len(names)} of {store.num_classes} speakers have a single labelled utterance and none in "
                   f"validation ({listed}): they are trained on, and validation accuracy is over the others")


def _say_why_the_search_ended(study: optuna.Study, job: SearchJob, hooks: SearchHooks) -> None:
    """The time limit, not ``trials``, rules a search (as AutoGluon's ``time_limit``): when it ended the
    search first, say after how many of the ``trials`` at most, and say it loudly when none completed."""
    counts = state_counts(study)
    if counts["complete"] == 0:
        hooks.note(f"no trial completed within the search's share of the {job.limit_s:.0f} s time limit "
                   f"({counts['pruned']} pruned, {counts['fail']} failed); a longer `time_limit` or fewer `workers` "
                   f"({job.workers} now) gives each trial more time")
    elif counts["finished"] < job.options.trials:
        hooks.note(f"the time limit ended the search after {counts['finished']} of at most {job.options.trials} "
                   f"trials; the rest of the {job.limit_s:.0f} s goes to the ensemble, refit and export")


def run_in_workers(opened: OpenedSearch, home: Path, options: SearchOptions, workers: int, data_root: Path,
                   hooks: SearchHooks) -> bool:
    """Run the search in ``workers`` worker processes; True if interrupted. :class:`StudyError` if all failed."""
    from automel.engine.parallel import cap_workers, last_line, launch_workers, wait_workers

    workers, capped = cap_workers(workers, options.device)
    if capped:
        hooks.aside(capped)
    started = launch_workers(opened, home, options, workers, data_root)
    where = ", ".join(sorted({w.device for w in started}))
    hooks.aside(f"{workers} workers on {where} ({started[0].threads} threads each); logs in {started[0].log.parent}")
    hooks.events.on_start(opened.study, opened.steps)
    try:
        with hooks.watching():
            codes = wait_workers(started, lambda: hooks.refresh(opened.study))
    except KeyboardInterrupt:
        return True
    failed = [(w, c) for w, c in zip(started, codes, strict=True) if c != 0]
    if failed and len(failed) == len(started):
        worker, code = failed[0]
        raise StudyError(f"all {len(started)} workers failed; worker {worker.index} exited {code}: "
                         f"{last_line(worker.log)} (log: {worker.log})")
    for worker, code in failed:
        hooks.aside(f"worker {worker.index} exited {code}: {last_line(worker.log)} (log: {worker.log})")
    return False


def _finish(opened: OpenedSearch, job: SearchJob, clock: Clock, hooks: SearchHooks) -> FinishResult:
    """Ensemble, refit and export within the clock; Ctrl-C keeps the search and says how to finish."""
    study = opened.study
    options = FinishOptions(refit=job.refit, ensemble_size=job.quality.ensemble_size,
                            refit_seeds=job.quality.refit_seeds, deterministic=job.options.deterministic,
                            formats=job.formats, adapt=job.adapt)
    started = time.monotonic()
    hooks.phase(f"ensemble, refit and export started [{clock.elapsed():.0f} s elapsed]")
    try:
        result = finish_study(opened.handle, study, options, select_device(job.options.device),
                              deadline=clock.finish_deadline(), data_root=job.data, note=hooks.note)
    except KeyboardInterrupt:
        raise Interrupted(f"after the search: every trial is saved and the previous export is intact; "
                          f"run `automel refit --study {study.study_name}` to refit and export") from None
    for phase, seconds in result.timings.items():
        clock.record(phase, seconds)
        if job.refit or phase != "refit":
            hooks.phase(f"{phase} done in {seconds:.1f} s")
    clock.record("other", max(0.0, time.monotonic() - started - sum(result.timings.values())))
    append_budget_run(study, clock.summary())
    return result
