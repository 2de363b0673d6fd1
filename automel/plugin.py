"""The plugin contract: every encoder, pooling layer and loss head is a class like these.

A plugin has a ``name``, a frozen config dataclass (``config_cls``), a define-by-run search space
``suggest(trial) -> config`` and ``build(config, ...) -> nn.Module``. Each config field ``f`` is the
trial parameter ``"{kind}.{name}.{f}"`` (e.g. ``encoder.conformer.num_layers``), so two plugins never
share a parameter name and a finished trial's parameters rebuild the exact config (``from_params``).

Shapes, with ``B`` batch, ``T`` frames, ``F`` mel bins, ``D`` channels, ``C`` classes:

- encoder: ``forward(x (B,T,F), mask (B,T) bool, True = real frame) -> (B,T,D)``; ``out_dim == D``.
- pooling: ``forward(x (B,T,D), mask (B,T)) -> (B,P)``; ``out_dim == P`` (e.g. 2D for mean+std).
- head: ``forward(embedding (B,P), labels (B,) | None) -> logits (B,C)``. Margin heads apply the
  margin only when labels are given; cross-entropy stays outside the head. ``set_progress(p)`` with
  ``p`` in [0, 1] lets a head warm its margin up over training.

Padded frames (``mask == False``) must never change the output for the real frames.

Search scale: a search on a CPU cannot afford the model sizes a GPU can. ``suggest`` may pick its ranges
with :func:`by_scale` (``cpu`` or ``gpu``); the scale is fixed per study, so a parameter never changes its
distribution inside one study. Outside a search the scale is ``gpu`` (the full ranges).
"""

from __future__ import annotations

import dataclasses
import types
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from automel.errors import PluginError

if TYPE_CHECKING:
    import optuna
    from torch import nn

Kind = Literal["encoder", "pooling", "head"]
KINDS: tuple[Kind, ...] = ("encoder", "pooling", "head")
SCALES = ("cpu", "gpu")
T = TypeVar("T")

_scale: ContextVar[str] = ContextVar("automel_search_scale", default="gpu")


def search_scale() -> str:
    """``cpu`` or ``gpu``: the model sizes the running search can afford."""
    return _scale.get()


@contextmanager
def using_search_scale(scale: str) -> Iterator[None]:
    """Run ``suggest`` calls inside with ``scale``'s ranges."""
    if scale not in SCALES:
        raise PluginError(f"search scale {scale!r} is not one of {', '.join(SCALES)}")
    token = _scale.set(scale)
    try:
        yield
    finally:
        _scale.reset(token)


def by_scale(cpu: T, gpu: T) -> T:
    """The ``cpu`` value inside a CPU-scale search, else the ``gpu`` one."""
    return cpu if _scale.get() == "cpu" else gpu


class Plugin(ABC):
    """Base of all plugins. Subclass one of :class:`EncoderPlugin`, :class:`PoolingPlugin`, :class:`HeadPlugin`."""

    kind: ClassVar[Kind]
    name: ClassVar[str]
    config_cls: ClassVar[type]

    @classmethod
    def param(cls, field: str) -> str:
        """The namespaced trial-parameter name of a config field."""
        return f"{cls.kind}.{cls.name}.{field}"

    @classmethod
    @abstractmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> Any:
        """Sample a config from ``trial`` using names made by :meth:`param`."""

    @classmethod
    def portfolio(cls) -> list[dict[str, Any]]:
        """Known-good complete configurations that use this plugin, to start a new search with.

        Each entry maps trial parameters (``encoder``, ``pooling``, ``head``, their namespaced fields and
        ``train.*``) to values; use :func:`by_scale` for sizes. An optional ``"priority"`` orders the
        entries among all others (lower first; built-ins use 1-4, the default is 10). Default: none.
        """
        return []

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Any:
        """Build the config from namespaced parameters; missing fields take their defaults.

        Parameters of other plugins are ignored; an unknown field of *this* plugin is an error, so a
        typo in a config file never passes silently.
        """
        prefix = f"{cls.kind}.{cls.name}."
        fields = {f.name: f for f in dataclasses.fields(cls.config_cls)}
        values: dict[str, Any] = {}
        for key, value in params.items():
            if not key.startswith(prefix):
                continue
            field = key[len(prefix) :]
            if field not in fields:
                known = ", ".join(sorted(fields)) or "none"
                raise PluginError(f"{cls.kind} '{cls.name}' has no parameter '{field}' (known: {known})")
            values[field] = _coerce(field, value, _field_types(cls.config_cls)[field], cls)
        try:
            return cls.config_cls(**values)
        except (TypeError, ValueError) as exc:
            raise PluginError(f"{cls.kind} '{cls.name}': invalid parameters: {exc}") from exc

    @classmethod
    def to_params(cls, config: Any) -> dict[str, Any]:
        """The namespaced parameters of ``config`` (the inverse of :meth:`from_params`)."""
        return {cls.param(k): v for k, v in dataclasses.asdict(config).items()}


class EncoderPlugin(Plugin):
    kind: ClassVar[Kind] = "encoder"

    @classmethod
    @abstractmethod
    def build(cls, config: Any, in_dim: int) -> nn.Module:
        """Return a module with ``out_dim``: ``(B,T,in_dim), (B,T) -> (B,T,out_dim)``."""


class PoolingPlugin(Plugin):
    kind: ClassVar[Kind] = "pooling"

    @classmethod
    @abstractmethod
    def build(cls, config: Any, in_dim: int) -> nn.Module:
        """Return a module with ``out_dim``: ``(B,T,in_dim), (B,T) -> (B,out_dim)``."""


class HeadPlugin(Plugin):
    kind: ClassVar[Kind] = "head"

    @classmethod
    @abstractmethod
    def build(cls, config: Any, in_dim: int, num_classes: int) -> nn.Module:
        """Return a module: ``(B,in_dim), labels (B,) | None -> logits (B,num_classes)``."""


def set_head_progress(head: nn.Module, progress: float) -> None:
    """Tell a head how far training is (0..1); heads without a schedule ignore it."""
    setter = getattr(head, "set_progress", None)
    if callable(setter):
        setter(progress)


def _field_types(config_cls: type) -> dict[str, Any]:
    return get_type_hints(config_cls)


def _coerce(field: str, value: Any, annotation: Any, plugin: type[Plugin]) -> Any:
    """Accept JSON's numbers for typed fields (``4.0`` for an int, ``1`` for a float); refuse the rest."""
    allowed = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    if value is None and type(None) in allowed:
        return None
    if bool in allowed and isinstance(value, bool):
        return value
    if int in allowed and isinstance(value, int | float) and not isinstance(value, bool) and value == int(value):
        return int(value)
    if float in allowed and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if str in allowed and isinstance(value, str):
        return value
    if get_origin(annotation) is Literal and value in get_args(annotation):
        return value
    raise PluginError(f"{plugin.kind} '{plugin.name}': parameter '{field}' = {value!r} is not {annotation}")


def __getattr__(name: str) -> Any:
    # `masked_fill_padding` moved to automel.layers (the building blocks' floor); plugins written
    # against this module keep importing it from here, lazily, so this module stays torch-free.
    if name == "masked_fill_padding":
        from automel.layers import masked_fill_padding

        return masked_fill_padding
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
