"""The search space: a plugin choice per kind, each chosen plugin's own space, then training parameters.

The lists of allowed plugin names are frozen per study (Optuna forbids a categorical whose choices change),
and every parameter is namespaced (``encoder.conformer.num_layers``, ``train.lr``), so a finished trial's
``params`` replayed through :class:`optuna.trial.FixedTrial` rebuild exactly its model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna

from automel.errors import StudyError
from automel.plugin import KINDS, Kind, by_scale
from automel.registry import Registry, default_registry
from automel.train.config import TrainParams


@dataclass(frozen=True)
class SearchSpace:
    """Allowed plugin names per kind, sorted (the frozen part of a study)."""

    encoders: tuple[str, ...]
    poolings: tuple[str, ...]
    heads: tuple[str, ...]

    def names(self, kind: Kind) -> tuple[str, ...]:
        return {"encoder": self.encoders, "pooling": self.poolings, "head": self.heads}[kind]

    def to_json(self) -> dict[str, list[str]]:
        return {"encoder": list(self.encoders), "pooling": list(self.poolings), "head": list(self.heads)}

    @classmethod
    def from_json(cls, data: dict[str, list[str]]) -> SearchSpace:
        return cls(tuple(data["encoder"]), tuple(data["pooling"]), tuple(data["head"]))

    def check_installed(self, registry: Registry) -> None:
        """Stop before training when the study names a plugin that is not installed (any more).

        The study's plugin list is frozen (Optuna forbids changing a categorical's choices), so the only
        ways on are installing the plugin again or starting a new study.
        """
        for kind in KINDS:
            for name in self.names(kind):
                if name in registry.names(kind):
                    continue
                failure = registry.failure(kind, name)
                why = (f"but {failure.describe()}; fix or reinstall it" if failure is not None else
                       f"which is not installed (installed: {', '.join(registry.names(kind)) or 'none'}); "
                       "install the package that provides it")
                raise StudyError(f"this study needs {kind} '{name}', {why}, or start a new study with `study` NAME")


def make_space(encoders: list[str] | None, poolings: list[str] | None, heads: list[str] | None,
               registry: Registry | None = None) -> SearchSpace:
    """Every plugin of a kind in ``registry`` (default: :func:`default_registry`) unless a list is given;
    unknown names are an error."""
    registry = registry if registry is not None else default_registry()
    chosen: dict[Kind, tuple[str, ...]] = {}
    for kind, names in zip(KINDS, (encoders, poolings, heads), strict=True):
        allowed = names or registry.names(kind)
        for name in allowed:
            registry.get(kind, name)  # raises PluginError naming what is installed
        chosen[kind] = tuple(sorted(set(allowed)))
    return SearchSpace(chosen["encoder"], chosen["pooling"], chosen["head"])


def suggest_train(trial: optuna.trial.BaseTrial) -> TrainParams:
    """Training parameters; ranges sized for short trials (hundreds to a few thousand steps). Each
    augmentation family is one knob, its level (:mod:`automel.data.augment`)."""
    return TrainParams(
        lr=trial.suggest_float("train.lr", 3e-4, 5e-3, log=True),
        warmup=trial.suggest_float("train.warmup", 0.0, 0.2),
        batch_size=trial.suggest_categorical("train.batch_size", by_scale([16, 32], [32, 64])),
        segment_len=trial.suggest_categorical("train.segment_len", by_scale([64, 128], [128, 192, 256])),
        weight_decay=trial.suggest_float("train.weight_decay", 1e-4, 0.1, log=True),
        normalize=trial.suggest_categorical("train.normalize", ["global", "utterance"]),
        specaugment=trial.suggest_categorical("train.specaugment", ["off", "light", "strong"]),
        channel_aug=trial.suggest_categorical("train.channel_aug", ["off", "light", "strong"]),
        noise_aug=trial.suggest_categorical("train.noise_aug", ["off", "light", "strong"]),
        reverb_aug=trial.suggest_categorical("train.reverb_aug", ["off", "light", "strong"]),
    )


def suggest_params(trial: optuna.trial.BaseTrial, space: SearchSpace, registry: Registry | None = None
                   ) -> dict[str, Any]:
    """Sample a whole trial; returns the plugin names plus every namespaced parameter the trial used.

    The plugins come from ``registry``: a search passes its own (:attr:`OpenedSearch.registry`); the
    default, :func:`default_registry`, is for callers outside a search.
    """
    registry = registry if registry is not None else default_registry()
    params: dict[str, Any] = {}
    for kind in KINDS:
        name = trial.suggest_categorical(kind, list(space.names(kind)))
        plugin = registry.get(kind, name)
        params[kind] = name
        params.update(plugin.to_params(plugin.suggest(trial)))
    params.update(suggest_train(trial).to_params())
    return params
