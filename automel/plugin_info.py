"""What each registered plugin is and what it searches: the data behind ``automel plugins``.

The parameter ranges are not written down anywhere but in each plugin's ``suggest``; this module asks
``suggest`` itself. It runs it against real Optuna trials of a throw-away in-memory study (random
sampler, fixed seed) and reads back ``trial.distributions``: the exact distributions (low, high, log,
step, choices) Optuna would search. Several draws are merged, so parameters that only exist in some
branches of a define-by-run space (e.g. a width asked only when a layer is on) still show up, and a
parameter asked with two different distributions fails here just as it would in a study.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from automel.errors import ConfigError
from automel.plugin import KINDS, SCALES, Kind, Plugin, using_search_scale
from automel.registry import Registry

__all__ = ["DRAWS", "PluginInfo", "describe_plugins", "format_distribution", "probe_space"]

DRAWS = 16  # random draws per plugin and scale: enough to reach the branches of a small conditional space
SEED = 0


@dataclass(frozen=True)
class PluginInfo:
    """One registered plugin: where it came from and its search space at each scale."""

    kind: Kind
    name: str
    distribution: str
    version: str
    spaces: dict[str, dict[str, BaseDistribution]] = field(default_factory=dict)  # scale -> param -> dist
    error: str | None = None  # set when ``suggest`` raised: the plugin is registered but cannot be searched

    def params(self) -> list[str]:
        """Every parameter of any scale, in the order ``suggest`` asks for them."""
        names: dict[str, None] = {}
        for space in self.spaces.values():
            names.update(dict.fromkeys(space))
        return list(names)


def probe_space(plugin: type[Plugin], scale: str, draws: int = DRAWS) -> dict[str, BaseDistribution]:
    """The distributions ``plugin.suggest`` asks for at ``scale``, merged over ``draws`` random trials.

    Exceptions from ``suggest`` (including Optuna's refusal of a name asked with two distributions)
    propagate to the caller.
    """
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "a new study created in memory" line
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=SEED))
    finally:
        optuna.logging.set_verbosity(verbosity)
    space: dict[str, BaseDistribution] = {}
    with using_search_scale(scale):
        for _ in range(draws):
            trial = study.ask()
            plugin.suggest(trial)
            for name, distribution in trial.distributions.items():
                space.setdefault(name, distribution)
            study.tell(trial, 0.0)  # a finished trial, so later draws are checked against its distributions
    return space


def describe_plugins(registry: Registry, kinds: tuple[Kind, ...] = KINDS,
                     scales: tuple[str, ...] = SCALES) -> list[PluginInfo]:
    """Every registered plugin of ``kinds`` (by kind, then name) with its space at each of ``scales``."""
    for kind in kinds:
        if kind not in KINDS:
            raise ConfigError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    for scale in scales:
        if scale not in SCALES:
            raise ConfigError(f"scale {scale!r} is not one of {', '.join(SCALES)}")
    infos = []
    for kind in kinds:
        for entry in registry.entries(kind):
            spaces: dict[str, dict[str, BaseDistribution]] = {}
            error = None
            for scale in scales:
                try:
                    spaces[scale] = probe_space(entry.plugin, scale)
                except Exception as exc:  # a plugin's bug must not hide the other plugins' listing
                    error = f"suggest() at {scale} scale raised {type(exc).__name__}: {exc}"
                    break
            infos.append(PluginInfo(kind, entry.plugin.name, entry.distribution, entry.version, spaces, error))
    return infos


def format_distribution(distribution: BaseDistribution) -> str:
    """A short range: ``int 1..4``, ``int 128..1024 log``, ``float 0..0.3``, ``{64, 80, 96}``."""
    if isinstance(distribution, CategoricalDistribution):
        return "{" + ", ".join(str(c) for c in distribution.choices) + "}"
    if isinstance(distribution, IntDistribution | FloatDistribution):
        kind = "int" if isinstance(distribution, IntDistribution) else "float"
        text = f"{kind} {distribution.low:g}..{distribution.high:g}"
        if distribution.log:
            text += " log"
        if distribution.step is not None and not (kind == "int" and distribution.step == 1):
            text += f" step {distribution.step:g}"
        return text
    return repr(distribution)  # a distribution type Optuna may add later: show it rather than fail
