"""The wall-clock budget of ``automel search --time-limit``: how it is parsed, split and accounted for.

One limit covers the whole job: search, ensemble selection, refit and export. A quality preset
(``--quality``, like AutoGluon's presets) decides the split:

- ``fast``: a short search and a long refit of the winner, no ensemble;
- ``balanced`` (default): half the time searching, the rest for refitting up to 3 ensemble members;
- ``best``: a longer search, up to 5 members, and refits with several seeds.

:class:`Clock` is the single source of "how much time is left"; every phase asks it for a deadline.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna

from automel.errors import ConfigError, option_named
from automel.plugin import using_search_scale

if TYPE_CHECKING:
    import torch

    from automel.engine.space import SearchSpace
    from automel.registry import Registry
    from automel.train.fit import Workspace

DEFAULT_TIME_LIMIT_S = 10 * 60.0
MIN_TIME_LIMIT_S = 30.0  # one short trial, a short refit and the export; less cannot produce a model
# Set aside for the export (validation and test predictions, files): a floor plus a share of the limit.
EXPORT_RESERVE_S, EXPORT_RESERVE_SHARE = 5.0, 0.03
NO_REFIT_FINISH_SHARE = 0.05  # without a refit, what the ensemble selection gets after the search


@dataclass(frozen=True)
class Quality:
    """How a quality preset splits the budget and how much it tries after the search."""

    name: str
    search_share: float  # of the time limit, for trials
    top_rung_share: float  # of the search time, for one trial that runs to the last rung
    ensemble_size: int  # most members of the ensemble (1 = no ensemble)
    refit_seeds: int  # most seeds of a single refit model, when time allows more than one long run


QUALITIES: dict[str, Quality] = {
    "fast": Quality("fast", search_share=0.35, top_rung_share=1 / 4, ensemble_size=1, refit_seeds=1),
    "balanced": Quality("balanced", search_share=0.5, top_rung_share=1 / 6, ensemble_size=3, refit_seeds=2),
    "best": Quality("best", search_share=0.55, top_rung_share=1 / 8, ensemble_size=5, refit_seeds=3),
}
DEFAULT_QUALITY = "balanced"

MAX_TIME_LIMIT_S = 30 * 24 * 3600.0  # 30 days: longer is a typo, and beyond float's exact seconds anyway
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?(?:e[+-]?\d+)?|\.\d+(?:e[+-]?\d+)?)\s*(s|sec|m|min|h|hr)?\s*$",
                       re.IGNORECASE)
_UNIT_S = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0}


def parse_duration(text: str | float, what: str = "time_limit") -> float:
    """Seconds in ``90s``, ``30m``, ``2h``, ``1.5h``, plain ``600`` (or a number of seconds); at most
    :data:`MAX_TIME_LIMIT_S`. :class:`ConfigError` otherwise, quoting the value as the user gave it and naming
    ``what`` (a parameter, shown in backticks, or a flag as given: :func:`automel.errors.option_named`)."""
    what = option_named(what)
    shown = repr(text) if isinstance(text, str) else format(text, "g") if isinstance(text, float) else str(text)
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ConfigError(f"{what} {shown} is not a duration (use e.g. 90s, 30m, 2h or plain seconds)")
    if isinstance(text, str):
        match = _DURATION.match(text)
        if match is None:
            raise ConfigError(f"{what} {shown} is not a duration (use e.g. 90s, 30m, 2h or plain seconds)")
        seconds = float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]
    else:
        seconds = float(text)
    if math.isnan(seconds) or seconds <= 0:
        raise ConfigError(f"{what} {shown} must be longer than zero")
    if seconds > MAX_TIME_LIMIT_S:
        raise ConfigError(f"{what} {shown} is longer than the longest allowed ({MAX_TIME_LIMIT_S / 86400:g} days); "
                          "give a shorter one")
    return seconds


def quality_named(name: str) -> Quality:
    try:
        return QUALITIES[name]
    except KeyError:
        raise ConfigError(f"`quality` {name!r} is unknown (choose {', '.join(QUALITIES)})") from None


def check_time_limit(seconds: float) -> None:
    if seconds < MIN_TIME_LIMIT_S:
        raise ConfigError(f"`time_limit` {seconds:g}s is shorter than the shortest useful run "
                          f"({MIN_TIME_LIMIT_S:g}s: one short trial, a refit and the export)")


@dataclass
class Clock:
    """Time since the command started, against its limit; records how long each phase took."""

    limit_s: float
    quality: Quality
    refit: bool = True  # without a refit, the search keeps all but the export's reserve
    started: float = field(default_factory=time.monotonic)
    phases: dict[str, float] = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def left(self) -> float:
        return self.limit_s - self.elapsed()

    @property
    def export_reserve_s(self) -> float:
        return EXPORT_RESERVE_S + EXPORT_RESERVE_SHARE * self.limit_s

    def search_deadline(self) -> float:
        """Monotonic time at which no trial may still be training."""
        if not self.refit:
            return self.finish_deadline() - NO_REFIT_FINISH_SHARE * self.limit_s
        return self.started + self.quality.search_share * self.limit_s

    def finish_deadline(self) -> float:
        """Monotonic time by which refits must end, leaving the export its reserve."""
        return self.started + self.limit_s - self.export_reserve_s

    def record(self, phase: str, seconds: float) -> None:
        self.phases[phase] = round(self.phases.get(phase, 0.0) + seconds, 3)

    def summary(self) -> dict[str, object]:
        return {"time_limit_s": self.limit_s, "quality": self.quality.name, "phases_s": dict(self.phases),
                "total_s": round(self.elapsed(), 3), "ended": time.strftime("%Y-%m-%dT%H:%M:%S")}


@dataclass(frozen=True)
class Speed:
    """What one trial costs on this machine: seconds per training step and per validation pass."""

    step_s: float
    validation_s: float


def plan_top_rung(search_s: float, quality: Quality, speed: Speed, rungs: int, reduction: int) -> int:
    """Steps of the last rung such that one trial reaching it takes ``top_rung_share`` of the search.

    A trial that runs to the end validates ``reduction**(rungs-1)`` times (at every multiple of the first
    rung), and that time is set aside first. When the share buys fewer than ``MIN_USEFUL_STEPS`` steps (a
    short limit, a slow machine, a large validation set), the share grows up to half the search: a few
    trials long enough to say something beat many that all sit at chance. The first rung is at least
    ``MIN_FIRST_RUNG`` steps.
    """
    validations = reduction ** (rungs - 1)
    step_s = max(speed.step_s, 1e-6)

    def affordable(share: float) -> float:
        return (share * search_s - validations * speed.validation_s) / step_s

    top = affordable(quality.top_rung_share)
    if top < MIN_USEFUL_STEPS:
        top = min(MIN_USEFUL_STEPS, affordable(MAX_TOP_RUNG_SHARE))
    first = max(MIN_FIRST_RUNG, int(top / reduction ** (rungs - 1)))
    return min(first * reduction ** (rungs - 1), MAX_TOP_RUNG)


MIN_USEFUL_STEPS = 150
MAX_TOP_RUNG_SHARE = 0.5
MIN_FIRST_RUNG = 4
MAX_TOP_RUNG = 100_000
CALIBRATION_STEPS = 10


def above_chance(accuracy: float | None, n_valid: int, n_classes: int) -> bool:
    """Whether ``accuracy`` on ``n_valid`` utterances is clearly (3 standard deviations) above guessing."""
    if accuracy is None or n_valid == 0 or n_classes < 2:
        return True  # nothing to judge by: assume the trials say something
    p = 1.0 / n_classes
    chance = n_valid * p
    return accuracy * n_valid > chance + 3.0 * math.sqrt(chance * (1.0 - p)) + 1.0


CHANCE_TRIALS = 4  # finished trials, all at chance, before the search gives up on this fidelity


def chance_stop(n_valid: int, n_classes: int) -> Callable[[optuna.Study], str | None]:
    """Ends the search when its first ``CHANCE_TRIALS`` finished trials all stayed at chance.

    Trials that short learn nothing on this data set (many speakers, few utterances, a short limit): more
    of them would only rank noise, while the refit, which trains much longer, can still learn. The time
    left goes to the refit. One trial at chance is not enough: another configuration may learn sooner.
    """
    from optuna.trial import TrialState

    def reason(study: optuna.Study) -> str | None:
        finished = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
                    if t.intermediate_values]
        best = max((max(t.intermediate_values.values()) for t in finished), default=0.0)
        if len(finished) < CHANCE_TRIALS or above_chance(best, n_valid, n_classes):
            return None
        return (f"trials of this length stay at chance here (the best of {len(finished)} reached {best:.1%} on "
                f"{n_valid} validation utterances, chance {1 / n_classes:.1%}): the rest of the time goes to "
                f"training longer")

    return reason


def calibration_params(space: SearchSpace, scale: str, registry: Registry) -> dict[str, Any]:
    """The configuration the step plan is measured on: the first portfolio entry, else a random draw."""
    from automel.engine.portfolio import portfolio
    from automel.engine.space import suggest_params

    entries = portfolio(space, scale, registry)
    if entries:
        return entries[0]
    with using_search_scale(scale):
        return suggest_params(_random_trial(), space, registry)


def _random_trial() -> optuna.Trial:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    return study.ask()


def measure_speed(params: dict[str, Any], work: Workspace, device: torch.device) -> Speed:
    """Training and validation speed of ``params`` here: a few real steps of the shared loop, one validation."""
    from automel.train.config import RunSettings
    from automel.train.fit import train_run
    from automel.train.loop import evaluate

    settings = RunSettings(steps=CALIBRATION_STEPS, valid_every=CALIBRATION_STEPS, validate=False)
    model, result, _ = train_run(params, work, settings, device)
    started = time.perf_counter()
    if len(work.split.valid):
        evaluate(model.to(device), work.store, work.split.valid, device)
    return Speed(result.seconds / max(result.steps, 1), time.perf_counter() - started)


def seconds_per_step(params: dict[str, Any], work: Workspace, device: torch.device) -> float:
    """Measured seconds per training step of ``params`` on this machine (see :func:`measure_speed`)."""
    return measure_speed(params, work, device).step_s


def step_planner(clock: Clock, device: torch.device, registry: Registry
                 ) -> Callable[[Workspace, SearchSpace, str], int]:
    """Sizes a new study's last rung so one full trial takes the quality's share of the search time."""
    from automel.engine.study import REDUCTION, RUNGS

    def plan(work: Workspace, space: SearchSpace, scale: str) -> int:
        speed = measure_speed(calibration_params(space, scale, registry), work, device)
        search_s = max(clock.search_deadline() - time.monotonic(), 1.0)
        return plan_top_rung(search_s, clock.quality, speed, RUNGS, REDUCTION)

    return plan
