"""One search trial: sample a configuration, train it through the shared loop, report to the pruner.

Multi-fidelity and the learning-rate schedule: every trial's schedule (warm-up, then cosine decay) is
planned for the *last* rung, ``steps_per_trial``. The pruner (successive halving by default) stops the
trials that fall behind at the earlier rungs. A stopped trial is never resumed, so no checkpoints are
kept, and at every rung all trials are compared at the same point of the same schedule, which keeps the
comparison fair. Trials that reach the last rung finish their schedule and are the refit candidates.
"""

from __future__ import annotations

import contextlib
import os
import socket
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState

from automel.engine.artifacts import save_trial_artifacts
from automel.engine.banks import trial_banks
from automel.engine.constraints import Constraints, measure_trial
from automel.engine.cost import cost_guard
from automel.engine.counting import SURPLUS_ATTR, SurplusTrial, covered_ahead
from automel.engine.space import suggest_params
from automel.engine.study import storage_file
from automel.errors import DiskError, Fatal, Terminated
from automel.plugin import using_search_scale
from automel.train.config import RunSettings
from automel.train.device import release_memory, select_device
from automel.train.fit import train_run
from automel.train.loop import TrainResult

if TYPE_CHECKING:
    from automel.engine.artifacts import ArtifactStore
    from automel.engine.search import OpenedSearch, SearchEvents, SearchOptions

TIME_LIMIT_REASON = "cut by the time limit"
INTERRUPTED_REASON, TERMINATED_REASON = "interrupted by the user (Ctrl-C)", "terminated (SIGTERM)"


def validation_every(steps: int, pruner: str) -> int:
    """Validate at every multiple of the first rung of successive halving; 4 times with the other pruners."""
    from automel.engine.study import VALIDATIONS, rung_steps

    if pruner == "asha":
        return rung_steps(steps)[0]
    return max(1, steps // VALIDATIONS)


class TrialObjective:
    """The callable ``study.optimize`` runs; ``deadline`` (monotonic) cuts a trial still training then."""

    def __init__(self, opened: OpenedSearch, options: SearchOptions, store: ArtifactStore,
                 events: SearchEvents, deadline: float | None = None) -> None:
        self.opened, self.options, self.store, self.events = opened, options, store, events
        self.deadline = deadline
        self.device = select_device(options.device)
        self.reserve = DiskReserve(self._storage_file())
        self.limits = Constraints.of_study(opened.study)  # a joining worker follows the study's limits

    def __call__(self, trial: optuna.Trial) -> float:
        if covered_ahead(self.opened.study, trial.number) >= self.options.trials:
            trial.set_user_attr(SURPLUS_ATTR, True)
            raise SurplusTrial("not needed: the trials ahead of it already reach the study's target")
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except KeyboardInterrupt as exc:
            reason = TERMINATED_REASON if isinstance(exc, Terminated) else INTERRUPTED_REASON
            with contextlib.suppress(Exception):  # a second signal, or the storage failing too
                trial.set_user_attr("fail_reason", reason)
            raise
        except Exception as exc:
            fault = DiskError.find(exc, self._storage_file() or self.store.path)
            if fault is not None:  # a full or read-only disk fails every further trial too: end the search
                self.reserve.release()  # room for the study to record the failure
                _fail_now(self.opened.study, trial, str(fault))
                raise Fatal(fault) from exc
            with contextlib.suppress(UpdateFinishedTrialError):  # unless another worker failed it already
                trial.set_user_attr("fail_reason", f"{type(exc).__name__}: {exc}"[:500])
            # The traceback's frames hold the failed run's tensors (an OOM's activations): drop them, or
            # release_memory frees nothing and the next trial starts on a full device.
            traceback.clear_frames(exc.__traceback__)
            raise
        finally:
            release_memory(self.device)

    def _run(self, trial: optuna.Trial) -> float:
        with using_search_scale(self.opened.scale):
            params = suggest_params(trial, self.opened.space, self.opened.registry)
        seed = self.options.seed * 100_003 + trial.number
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        self.events.on_trial_start(trial.number, params)
        steps = self.opened.steps
        settings = RunSettings(steps=steps, valid_every=validation_every(steps, self.opened.pruner), seed=seed,
                               deadline=self.deadline, deterministic=self.options.deterministic,
                               objective=self.opened.objective, **trial_banks(trial, self.opened.study))
        n_mels = self.opened.work.store.n_mels
        guard = cost_guard(trial, steps, self.options.max_cost_ratio)

        def progress(step: int, metrics: dict[str, float]) -> None:
            guard(step, metrics)  # may stop a trial far costlier per step than the study's others
            self.events.on_progress(step, metrics)

        model, result, record = train_run(params, self.opened.work, settings, self.device,
                                          [_pruning(trial, steps)], progress, self.opened.registry,
                                          on_built=lambda built: measure_trial(trial, built, n_mels, self.limits))
        trial.set_user_attr("steps", result.steps)
        trial.set_user_attr("seconds", round(result.seconds, 2))
        trial.set_user_attr("train_seconds", round(result.seconds - result.validation_seconds, 2))
        trial.set_user_attr("best_step", result.best_step)
        _record_scores(trial, result)
        if result.averaging is not None:  # the refit averages its tail only where this says it won here
            trial.set_user_attr("averaging", result.averaging)
        if result.stopped_by_deadline:
            trial.set_user_attr("pruned_reason", TIME_LIMIT_REASON)
            raise optuna.TrialPruned(f"{TIME_LIMIT_REASON} at step {result.steps}")
        if result.stopped_by_callback:
            raise optuna.TrialPruned(f"pruned at step {result.steps}")
        save_trial_artifacts(trial, self.store, model.state_dict(), record)
        return result.best_valid_acc

    def _storage_file(self) -> Path | None:
        """The study's file when it has one (SQLite, journal): where a disk fault that names no file happened."""
        return storage_file(self.opened.url)


def _record_scores(trial: optuna.Trial, result: TrainResult) -> None:
    """A robust objective's two halves at the best step (``valid_acc_clean``/``_shifted``), for the leaderboard."""
    rows = [row for row in result.history if int(row["step"]) == result.best_step and "valid_acc_clean" in row]
    if result.averaging and result.averaging.get("used") and "valid_acc_clean" in result.averaging:
        rows = [result.averaging]  # the tail average replaced the best step's weights
    if rows:
        for key in ("valid_acc_clean", "valid_acc_shifted"):
            trial.set_user_attr(key, round(float(rows[-1][key]), 6))


class DiskReserve:
    """A little ballast beside the study's file (``.NAME.reserve``, 1 MiB), given up when the disk is full.

    SQLite needs a few free pages to record anything, the failure of the trial that ran out of room
    included. With the ballast gone, there is room to fail that trial with its reason rather than leave it
    RUNNING. It is made again by the next search on that study (once there is room for it).
    """

    SIZE = 1 << 20

    def __init__(self, beside: Path | None) -> None:
        self.path = beside.with_name(f".{beside.name}.reserve") if beside is not None else None
        if self.path is None or self.path.exists():
            return
        try:
            with self.path.open("xb") as fh:
                os.posix_fallocate(fh.fileno(), 0, self.SIZE)
        except FileExistsError:  # another worker made it just now
            return
        except OSError:  # already too full (or read-only): no ballast, and nothing half made
            with contextlib.suppress(OSError):
                self.path.unlink()

    def release(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()


def _fail_now(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """Record the trial as failed with ``reason`` before the search ends; best effort, since the storage
    may be the full disk (then a later run fails it once its heartbeats lapse)."""
    with contextlib.suppress(Exception):
        trial.set_user_attr("fail_reason", reason[:500])
    with contextlib.suppress(Exception):
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def _pruning(trial: optuna.Trial, steps: int) -> Callable[[int, dict[str, float]], bool]:
    def report(step: int, metrics: dict[str, float]) -> bool:
        trial.report(metrics["valid_acc"], step)
        # The last step is the last rung: a trial that got there has earned its result, never a prune.
        return step < steps and trial.should_prune()

    return report
