"""Progress lines: the one formatter of a finished trial's line, and the lines a search or a training run
tells a ``progress`` callback.

Every place that shows trials as lines (``automel.search(progress=print)``, ``automel search`` off a
terminal, ``automel worker``) goes through :class:`TrialProgress`, which decides which trials get a line
(surplus trials, started after the study held its target, are no news), counts them towards the target and
formats them with :func:`trial_progress_line`::

    trial 4 COMPLETE: valid 83.33%, 120 steps, 4.1 s [5/200 finished, 25 s elapsed]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from automel.engine.job import SearchHooks

__all__ = ["TrialProgress", "search_progress_hooks", "step_line", "trial_progress_line"]

Say = Callable[[str], None]


def trial_progress_line(trial: FrozenTrial, finished: int, target: int, elapsed: float | None = None) -> str:
    """``trial 4 COMPLETE: valid 83.33%, 120 steps, 4.1 s [5/200 finished, 25 s elapsed]``: the state, the
    validation accuracy (or a failed trial's reason), steps and seconds, and the study's count so far."""
    from automel.engine.leaderboard import trial_line

    return trial_line(trial, finished, target, elapsed)


class TrialProgress:
    """Says one line per finished trial to ``say``, counted towards ``target``; ``elapsed()`` gives the
    seconds shown in each line (default: since this object was made).

    :meth:`finished` speaks of the trial this process just finished (``automel worker``); :meth:`refresh`
    of every trial finished since the last call, by this process or any other worker, once each and in
    number order (a search's plain lines); :meth:`start` marks the trials that finished before as old news.
    """

    def __init__(self, target: int, say: Say, elapsed: Callable[[], float] | None = None) -> None:
        started = time.monotonic()
        self.target, self.say = target, say
        self.elapsed = elapsed or (lambda: time.monotonic() - started)
        self.seen: set[int] = set()

    def start(self, study: optuna.Study) -> None:
        """Trials already finished (a resumed study) get no line."""
        self.seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}

    def finished(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """The line of ``trial``, just finished here, counted with the study's finished trials."""
        from automel.engine.counting import is_surplus, state_counts

        self.seen.add(trial.number)
        if not is_surplus(trial):
            self.say(trial_progress_line(trial, state_counts(study)["finished"], self.target, self.elapsed()))

    def refresh(self, study: optuna.Study) -> None:
        """One line per trial finished since the last call, by this process or any other worker."""
        from automel.engine.counting import FINISHED, is_surplus

        trials = study.get_trials(deepcopy=False)
        new = sorted((t for t in trials if t.state.is_finished() and t.number not in self.seen), key=lambda t: t.number)
        finished = sum(t.state in FINISHED for t in trials) - sum(t.state in FINISHED for t in new)
        for trial in new:
            self.seen.add(trial.number)
            finished += trial.state in FINISHED
            if not is_surplus(trial):  # a trial started after the target was met is no news
                self.say(trial_progress_line(trial, finished, self.target, self.elapsed()))


def search_progress_hooks(progress: Say | None, target: int) -> SearchHooks:
    """Plain progress lines for ``progress``: phases, notes, a first feature-cache build, and one line per
    finished trial (worker processes' trials too)."""
    from automel.engine.job import SearchHooks, counted_lines
    from automel.engine.search import SearchEvents

    if progress is None:
        return SearchHooks()
    say = progress
    trials = TrialProgress(target, say)

    def on_start(study: optuna.Study, steps: int) -> None:
        trials.start(study)
        say(f"search started: study {study.study_name}, {steps} steps per trial")

    events = SearchEvents(on_start=on_start, on_trial_end=lambda study, trial: trials.refresh(study))
    return SearchHooks(note=say, aside=say, phase=say, events=events, refresh=trials.refresh,
                       cache_progress=counted_lines(say, "building the feature cache", "utterances"))


def step_line(step: int, steps: int | None, metrics: dict[str, float]) -> str:
    """A training run's line at a validation step: ``step 200/2000: loss 1.234, train 45.0%, valid 50.0%``
    (``step 200`` alone when the clock, not a step count, ends the run)."""
    where = f"step {step}/{steps}" if steps is not None else f"step {step}"
    fields = [f"loss {metrics['loss']:.3f}", f"train {metrics['train_acc']:.1%}"]
    if "valid_acc" in metrics:
        fields.append(f"valid {metrics['valid_acc']:.1%}")
    return f"{where}: {', '.join(fields)}"
