"""Fake plugins for tests: small valid ones, and ones broken on purpose in the ways real plugins break.

Use them to test code that takes plugins (a registry, a model builder, a search, a listing) without a real
model, or to see what the contract kit (:func:`automel.testing.check_plugin`) reports. None is registered
anywhere: register the ones a test needs in a :class:`automel.registry.Registry` of its own.

==========================  ==============  ======================================================================
class                       name            what it is for
==========================  ==============  ======================================================================
:class:`FakeEncoder`        fake            a valid encoder, one masked linear layer; passes the kit
:class:`FakeHead`           fake            a valid head, one linear layer; passes the kit
:class:`AbstractEncoder`    abstract        forgets ``build``: the registry refuses it
:class:`BrokenSpaceEncoder` broken-space    its ``suggest`` raises ``ValueError("no space today")``
:class:`BranchyEncoder`     branchy         a conditional (define-by-run) search space
:class:`FlakyEncoder`       flaky           raises in training for half of its search space
:class:`NoOutDimEncoder`    no-out-dim      builds a module without ``out_dim``
:class:`LyingPooling`       lying           declares ``out_dim = D`` but returns ``2D``
:class:`FixedWidthPooling`  fixed-width     ignores ``in_dim``: fails on an input of its declared size
:class:`LeakyPooling`       leaky           averages padded frames too, has an unused parameter and an
                                            un-namespaced trial parameter
:func:`leaky_norm_encoder`  leaky-{leak}    leaks padding in train mode only, or is random there
==========================  ==============  ======================================================================

Shapes as in :mod:`automel.plugin`: encoders ``x (B, T, D), mask (B, T) -> (B, T, out_dim)``, poolings
``-> (B, out_dim)``, heads ``embedding (B, D), labels (B,) | None -> logits (B, C)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import optuna
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automel.layers import MaskedBatchNorm1d
from automel.plugin import EncoderPlugin, HeadPlugin, PoolingPlugin, by_scale, masked_fill_padding

__all__ = [
    "LEAKS",
    "AbstractEncoder",
    "BranchConfig",
    "BranchyEncoder",
    "BrokenSpaceEncoder",
    "FakeConfig",
    "FakeEncoder",
    "FakeHead",
    "FixedWidthPooling",
    "FlakyConfig",
    "FlakyEncoder",
    "FlakyFrames",
    "LeakyPooling",
    "LyingPooling",
    "NoConfig",
    "NoOutDimEncoder",
    "WidthConfig",
    "leaky_norm_encoder",
]


@dataclass(frozen=True)
class NoConfig:
    """A plugin without parameters."""


class Parameterless:
    """Mixin for plugins without parameters: an empty config and an empty search space."""

    config_cls: ClassVar[type] = NoConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> NoConfig:
        return NoConfig()


@dataclass(frozen=True)
class FakeConfig:
    width: int = 16


@dataclass(frozen=True)
class WidthConfig:
    width: int = 4


# --- valid plugins ---------------------------------------------------------------------------------------


class MaskedLinear(nn.Module):
    """``(B, T, in_dim), mask (B, T) -> (B, T, width)``, padded frames zero in and out."""

    def __init__(self, in_dim: int, width: int) -> None:
        super().__init__()
        self.out_dim = width
        self.linear = nn.Linear(in_dim, width)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return masked_fill_padding(self.linear(masked_fill_padding(x, mask)), mask)


class FakeEncoder(EncoderPlugin):
    """A minimal valid encoder, what a plugin package would ship: ``width`` is searched in 8..32 (log)."""

    name = "fake"
    config_cls = FakeConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> FakeConfig:
        return FakeConfig(width=trial.suggest_int(cls.param("width"), 8, 32, log=True))

    @classmethod
    def build(cls, config: Any, in_dim: int) -> MaskedLinear:
        return MaskedLinear(in_dim, config.width)


class FakeHead(Parameterless, HeadPlugin):
    """A minimal valid head: ``embedding (B, in_dim) -> logits (B, num_classes)``, labels ignored."""

    name = "fake"

    @classmethod
    def build(cls, config: Any, in_dim: int, num_classes: int) -> nn.Module:
        return _LinearHead(in_dim, num_classes)


class _LinearHead(nn.Module):
    def __init__(self, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, num_classes)

    def forward(self, embedding: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.linear(embedding)


@dataclass(frozen=True)
class BranchConfig:
    layers: int = 1
    width: int | None = None


class BranchyEncoder(EncoderPlugin):
    """A define-by-run space with a branch: ``width`` exists only when ``layers`` > 1 (up to 2 layers at cpu
    scale, 3 at gpu scale). Its module is one masked linear layer, ``width`` (default 8) wide."""

    name = "branchy"
    config_cls = BranchConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> BranchConfig:
        layers = trial.suggest_int(cls.param("layers"), 1, by_scale(2, 3))
        width = trial.suggest_int(cls.param("width"), 8, 64, step=8) if layers > 1 else None
        return BranchConfig(layers, width)

    @classmethod
    def build(cls, config: Any, in_dim: int) -> MaskedLinear:
        return MaskedLinear(in_dim, config.width or 8)


# --- plugins the registry or the model builder refuses ---------------------------------------------------


class AbstractEncoder(EncoderPlugin):
    """Forgets ``build``: not a complete plugin class, so :meth:`Registry.register` raises."""

    name = "abstract"
    config_cls = FakeConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> FakeConfig:
        return FakeConfig()


class BrokenSpaceEncoder(FakeEncoder):
    """Registers fine, but its search space raises ``ValueError("no space today")``."""

    name = "broken-space"

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> Any:
        raise ValueError("no space today")


class NoOutDimEncoder(Parameterless, EncoderPlugin):
    """Builds an ``nn.Identity``: no ``out_dim``, so the next plugin's input size is unknown."""

    name = "no-out-dim"

    @classmethod
    def build(cls, config: Any, in_dim: int) -> nn.Module:
        return nn.Identity()


class LyingMean(nn.Module):
    """Claims ``out_dim = D`` but returns ``(B, 2D)``: the mean, twice."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return torch.cat([x.mean(1), x.mean(1)], dim=-1)


class LyingPooling(Parameterless, PoolingPlugin):
    """Its module's output is twice as wide as its ``out_dim`` says."""

    name = "lying"

    @classmethod
    def build(cls, config: Any, in_dim: int) -> nn.Module:
        return LyingMean(in_dim)


class FixedWidthMean(nn.Module):
    """Ignores ``in_dim``: projects from 7 channels whatever it is given, ``(B, T, 7) -> (B, 7)``."""

    def __init__(self) -> None:
        super().__init__()
        self.out_dim = 7
        self.linear = nn.Linear(7, 7)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.linear(x).mean(1)


class FixedWidthPooling(LyingPooling):
    """Fails on an input of the width it was built for (unless that is 7)."""

    name = "fixed-width"

    @classmethod
    def build(cls, config: Any, in_dim: int) -> nn.Module:
        return FixedWidthMean()


# --- plugins that fail inside training -----------------------------------------------------------------


@dataclass(frozen=True)
class FlakyConfig:
    width: int = 32
    explode: bool = False


class FlakyFrames(nn.Module):
    """A linear layer on roughly scaled log-mels; raises ``RuntimeError`` in train mode if ``explode``."""

    def __init__(self, config: FlakyConfig, in_dim: int) -> None:
        super().__init__()
        self.linear, self.explode, self.out_dim = nn.Linear(in_dim, config.width), config.explode, config.width

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        if self.explode and self.training:
            raise RuntimeError("flaky encoder exploded on purpose")
        return self.linear((x - 15.0) / 4.0)


class FlakyEncoder(EncoderPlugin):
    """An encoder that raises inside training for half of its search space (``explode`` is searched)."""

    name = "flaky"
    config_cls = FlakyConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> FlakyConfig:
        return FlakyConfig(trial.suggest_categorical(cls.param("width"), [16, 32]),
                           trial.suggest_categorical(cls.param("explode"), [False, True]))

    @classmethod
    def build(cls, config: Any, in_dim: int) -> nn.Module:
        return FlakyFrames(config, in_dim)


# --- plugins the contract kit catches ------------------------------------------------------------------


class LeakyMean(nn.Module):
    """Averages padded frames too, the classic masking bug; ``unused`` is never called (no gradient)."""

    def __init__(self, in_dim: int, width: int) -> None:
        super().__init__()
        self.out_dim = in_dim
        self.unused = nn.Linear(in_dim, width)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return x.mean(dim=1)


class LeakyPooling(PoolingPlugin):
    """Fails the masking, gradient and search-space checks: see :class:`LeakyMean`; its trial parameter is
    ``width``, not ``pooling.leaky.width``."""

    name = "leaky"
    config_cls = WidthConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> WidthConfig:
        return WidthConfig(width=trial.suggest_int("width", 2, 8))  # not namespaced

    @classmethod
    def build(cls, config: Any, in_dim: int) -> LeakyMean:
        return LeakyMean(in_dim, config.width)


LEAKS = ("outputs", "buffers", "random", "none")


class NormFrames(nn.Module):
    """Linear, then a BatchNorm over ``(B, C, T)``; ``leak`` picks how padding gets into it in training.

    ``outputs``: a plain ``nn.BatchNorm1d``, whose training statistics count padded frames; ``buffers``: a
    second, "monitoring" BatchNorm over every frame, output unused, running statistics polluted; ``random``:
    a functional dropout that the kit cannot switch off; ``none``: masked all through, passes the kit.
    """

    def __init__(self, in_dim: int, width: int, leak: str) -> None:
        super().__init__()
        self.out_dim, self.leak = width, leak
        self.linear = nn.Linear(in_dim, width)
        self.norm = nn.BatchNorm1d(width) if leak == "outputs" else MaskedBatchNorm1d(width)
        self.tracker = nn.BatchNorm1d(width, affine=False)
        self.dropout = nn.Dropout(0.5)  # a module: the train-mode check switches it off

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.linear(masked_fill_padding(x, mask)).transpose(1, 2)  # padding zeroed: still counted
        h = self.norm(h) if self.leak == "outputs" else self.norm(h, mask)
        if self.leak == "buffers":
            self.tracker(h)
        if self.leak == "random":
            h = F.dropout(h, 0.5, self.training)
        return masked_fill_padding(self.dropout(h.transpose(1, 2)), mask)


def leaky_norm_encoder(leak: str) -> type[EncoderPlugin]:
    """An encoder named ``leaky-{leak}`` around :class:`NormFrames`: it passes the eval-mode checks, and
    fails the train-mode masking check unless ``leak`` is ``none``."""
    if leak not in LEAKS:
        raise ValueError(f"leak {leak!r} is not one of {', '.join(LEAKS)}")

    class LeakyNormEncoder(EncoderPlugin):
        name = f"leaky-{leak}"
        config_cls = WidthConfig

        @classmethod
        def suggest(cls, trial: optuna.trial.BaseTrial) -> WidthConfig:
            return WidthConfig(width=trial.suggest_int(cls.param("width"), 2, 8))

        @classmethod
        def build(cls, config: Any, in_dim: int) -> NormFrames:
            return NormFrames(in_dim, config.width, leak)

    return LeakyNormEncoder
