"""One registry for built-in and external plugins.

Built-ins are listed below by import path; external plugins come from the entry-point groups
``automel.encoders``, ``automel.poolings`` and ``automel.heads`` of installed distributions. Both go
through :meth:`Registry.register`, so a duplicate name is an error naming both distributions, and a
plugin that fails to load is recorded once (name, distribution, error) and skipped while the rest
works. ``AUTOMEL_DISABLE_PLUGIN_AUTOLOAD=1`` turns external loading off (as pytest's switch does).
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from automel.errors import PluginError
from automel.plugin import KINDS, EncoderPlugin, HeadPlugin, Kind, Plugin, PoolingPlugin

GROUPS: dict[Kind, str] = {"encoder": "automel.encoders", "pooling": "automel.poolings", "head": "automel.heads"}
BASES: dict[Kind, type] = {"encoder": EncoderPlugin, "pooling": PoolingPlugin, "head": HeadPlugin}
DISABLE_ENV = "AUTOMEL_DISABLE_PLUGIN_AUTOLOAD"
BUILTIN_DIST = "automel"

BUILTINS: dict[Kind, tuple[str, ...]] = {
    "encoder": ("automel.encoders.transformer:Transformer", "automel.encoders.conformer:Conformer"),
    "pooling": (
        "automel.pooling.mean:MeanPooling",
        "automel.pooling.self_attention:SelfAttentionPooling",
        "automel.pooling.attentive_stats:AttentiveStatsPooling",
    ),
    "head": (
        "automel.heads.softmax:Softmax",
        "automel.heads.am_softmax:AMSoftmax",
        "automel.heads.aam_softmax:AAMSoftmax",
    ),
}


@dataclass(frozen=True)
class Entry:
    """A registered plugin and where it came from."""

    plugin: type[Plugin]
    distribution: str
    version: str


@dataclass(frozen=True)
class LoadFailure:
    """A plugin that could not be loaded; reported once, then skipped."""

    kind: Kind
    name: str
    distribution: str
    error: str

    def describe(self) -> str:
        return f"{self.kind} plugin '{self.name}' from {self.distribution} failed to load: {self.error}"


class Registry:
    """Plugins by kind and name. Build a fresh one in tests; use :func:`default_registry` elsewhere."""

    def __init__(self) -> None:
        self._entries: dict[Kind, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.failures: list[LoadFailure] = []

    def register(self, plugin: Any, distribution: str = BUILTIN_DIST, version: str = "") -> None:
        """Add ``plugin``; raise :class:`PluginError` if it is not a plugin class or its name is taken."""
        kind = _validate(plugin, distribution)
        existing = self._entries[kind].get(plugin.name)
        if existing is not None:
            raise PluginError(
                f"{kind} plugin name '{plugin.name}' is registered twice: by {existing.distribution} "
                f"and by {distribution}; uninstall one of them"
            )
        self._entries[kind][plugin.name] = Entry(plugin, distribution, version)

    def get(self, kind: Kind, name: str) -> type[Plugin]:
        try:
            return self._entries[kind][name].plugin
        except KeyError:
            known = ", ".join(self.names(kind)) or "none"
            raise PluginError(f"unknown {kind} '{name}' (installed: {known})") from None

    def entry(self, kind: Kind, name: str) -> Entry:
        self.get(kind, name)
        return self._entries[kind][name]

    def names(self, kind: Kind) -> list[str]:
        return sorted(self._entries[kind])

    def entries(self, kind: Kind) -> list[Entry]:
        return [self._entries[kind][n] for n in self.names(kind)]

    def load_builtins(self) -> None:
        from automel import __version__

        for paths in BUILTINS.values():
            for path in paths:
                module, _, attr = path.partition(":")
                self.register(getattr(importlib.import_module(module), attr), BUILTIN_DIST, __version__)

    def load_entry_points(self) -> None:
        """Load every external plugin; record failures (import errors, bad classes, clashes) and go on."""
        for kind, group in GROUPS.items():
            for ep in entry_points(group=group):
                dist = ep.dist.name if ep.dist is not None else "unknown distribution"
                if dist == BUILTIN_DIST:
                    continue
                self._load_one(kind, ep, dist, ep.dist.version if ep.dist is not None else "")

    def _load_one(self, kind: Kind, ep: EntryPoint, dist: str, version: str) -> None:
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take automel down with it
            self.failures.append(LoadFailure(kind, ep.name, dist, f"{type(exc).__name__}: {exc}"))
            return
        try:
            self.register(plugin, dist, version)
        except PluginError as exc:
            self.failures.append(LoadFailure(kind, ep.name, dist, str(exc)))


def _validate(plugin: Any, distribution: str) -> Kind:
    if not (isinstance(plugin, type) and issubclass(plugin, Plugin)):
        raise PluginError(f"{plugin!r} from {distribution} is not an automel plugin class")
    kind = getattr(plugin, "kind", None)
    if kind not in KINDS or not issubclass(plugin, BASES[kind]):
        raise PluginError(f"{plugin.__name__} from {distribution} does not subclass an automel plugin base")
    if not isinstance(getattr(plugin, "name", None), str) or not plugin.name:
        raise PluginError(f"{plugin.__name__} from {distribution} has no name")
    if getattr(plugin, "__abstractmethods__", None):
        missing = ", ".join(sorted(plugin.__abstractmethods__))
        raise PluginError(f"{kind} plugin '{plugin.name}' from {distribution} does not implement {missing}")
    return kind


@functools.cache
def default_registry() -> Registry:
    """Built-ins plus (unless disabled) every installed external plugin, loaded once per process."""
    registry = Registry()
    registry.load_builtins()
    if os.environ.get(DISABLE_ENV, "") not in ("1", "true", "yes"):
        registry.load_entry_points()
    return registry
