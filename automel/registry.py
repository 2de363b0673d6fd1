"""One registry for built-in and external plugins.

Built-ins are listed below by import path; external plugins come from the entry-point groups
``automel.encoders``, ``automel.poolings`` and ``automel.heads`` of installed distributions. Both go
through :meth:`Registry.register`, so a duplicate name is an error naming both distributions, and a
plugin that fails to load is recorded once (name, distribution, error) and skipped while the rest
works. A name claimed by two external distributions loads from neither: which one won would depend on
the order of ``sys.path``, so a study could silently change models between machines.
``AUTOMEL_DISABLE_PLUGIN_AUTOLOAD=1`` turns external loading off (as pytest's switch does).

Library code takes a :class:`Registry` as a parameter; only the outermost entry points (the CLI, a
public function's default) fall back to :func:`default_registry`, the process-wide one, which tests
reset with :func:`reset_default_registry`. :func:`build_registry` makes a fresh one.
"""

from __future__ import annotations

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
    "encoder": (
        "automel.encoders.transformer:Transformer",
        "automel.encoders.conformer:Conformer",
        "automel.encoders.tdnn:Tdnn",
    ),
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
    version: str = ""

    def describe(self) -> str:
        """One line naming the plugin, its distribution (and version) and what went wrong."""
        source = f"{self.distribution} {self.version}" if self.version else self.distribution
        return f"{self.kind} plugin '{self.name}' from {source} failed to load: {self.error}"


class Registry:
    """Plugins by kind and name. :func:`build_registry` makes a loaded one; :func:`default_registry` is the
    process-wide one that the outermost entry points fall back to."""

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

    def unregister(self, kind: Kind, name: str) -> Entry:
        """Remove plugin ``name`` and return its entry; :class:`PluginError` if it is not registered."""
        entry = self.entry(kind, name)
        del self._entries[kind][name]
        return entry

    def get(self, kind: Kind, name: str) -> type[Plugin]:
        """The plugin class; an unknown name is an error saying why (failed to load, or not installed)."""
        try:
            return self._entries[kind][name].plugin
        except KeyError:
            raise PluginError(self.why_missing(kind, name)) from None

    def why_missing(self, kind: Kind, name: str) -> str:
        """Why ``name`` is not available: its load failure if it has one, else what is installed."""
        failure = self.failure(kind, name)
        if failure is not None:
            return failure.describe()
        known = ", ".join(self.names(kind)) or "none"
        return (f"unknown {kind} '{name}' (installed: {known}); install the package that provides it "
                "(`automel plugins` lists what is installed)")

    def failure(self, kind: Kind, name: str) -> LoadFailure | None:
        """The recorded load failure of plugin ``name``, if any."""
        return next((f for f in self.failures if f.kind == kind and f.name == name), None)

    def entry(self, kind: Kind, name: str) -> Entry:
        """The plugin with its distribution and version; :class:`PluginError` if it is unknown."""
        self.get(kind, name)
        return self._entries[kind][name]

    def names(self, kind: Kind) -> list[str]:
        """The registered names of ``kind``, sorted."""
        return sorted(self._entries[kind])

    def entries(self, kind: Kind) -> list[Entry]:
        """The entries of ``kind``, by name."""
        return [self._entries[kind][n] for n in self.names(kind)]

    def load_builtins(self) -> None:
        """Register automel's own plugins (listed in :data:`BUILTINS`)."""
        from automel._version import __version__

        for paths in BUILTINS.values():
            for path in paths:
                module, _, attr = path.partition(":")
                self.register(getattr(importlib.import_module(module), attr), BUILTIN_DIST, __version__)

    def load_entry_points(self) -> None:
        """Load every external plugin; record failures (import errors, bad classes, clashes) and go on."""
        for kind, group in GROUPS.items():
            loaded: list[tuple[type[Plugin], str, str]] = []
            for ep in entry_points(group=group):
                dist = ep.dist.name if ep.dist is not None else "unknown distribution"
                if dist == BUILTIN_DIST:
                    continue
                version = ep.dist.version if ep.dist is not None else ""
                plugin = self._load_one(kind, ep, dist, version)
                if plugin is not None:
                    loaded.append((plugin, dist, version))
            self._register_loaded(kind, loaded)

    def _load_one(self, kind: Kind, ep: EntryPoint, dist: str, version: str) -> type[Plugin] | None:
        """Import and validate one entry point; on failure record it and return None."""
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take automel down with it
            self.failures.append(LoadFailure(kind, ep.name, dist, f"{type(exc).__name__}: {exc}", version))
            return None
        try:
            if _validate(plugin, None) != kind:
                raise PluginError(f"{plugin.__name__} is a {plugin.kind} plugin, declared in the "
                                  f"'{GROUPS[kind]}' entry-point group; declare it in '{GROUPS[plugin.kind]}'")
        except PluginError as exc:
            self.failures.append(LoadFailure(kind, ep.name, dist, str(exc), version))
            return None
        return plugin

    def _register_loaded(self, kind: Kind, loaded: list[tuple[type[Plugin], str, str]]) -> None:
        """Register valid external plugins of one kind; a name two distributions claim loads from neither."""
        claims: dict[str, list[str]] = {}
        for plugin, dist, _ in loaded:
            claims.setdefault(plugin.name, []).append(dist)
        for name, dists in claims.items():
            if len(set(dists)) > 1:
                both = " and ".join(sorted(set(dists)))
                self.failures.append(LoadFailure(kind, name, both, "both register this name, so neither is "
                                                 "loaded; uninstall one of them"))
        for plugin, dist, version in loaded:
            taken = self._entries[kind].get(plugin.name)
            if len(set(claims[plugin.name])) > 1:
                continue
            if taken is not None and taken.distribution == BUILTIN_DIST:
                # A built-in cannot be uninstalled: the plugin has to change its name.
                self.failures.append(LoadFailure(kind, plugin.name, dist, f"the name is taken by automel's "
                                                 f"built-in {kind}; rename the plugin", version))
                continue
            try:
                self.register(plugin, dist, version)
            except PluginError as exc:
                self.failures.append(LoadFailure(kind, plugin.name, dist, str(exc), version))


def _validate(plugin: Any, distribution: str | None) -> Kind:
    """The plugin's kind; raise :class:`PluginError` if it is not a complete plugin class.

    ``distribution`` is named in the message unless None (a load failure names it already).
    """
    source = f" from {distribution}" if distribution else ""
    if not (isinstance(plugin, type) and issubclass(plugin, Plugin)):
        raise PluginError(f"{_what(plugin)}{source} is not an automel plugin class "
                          "(subclass EncoderPlugin, PoolingPlugin or HeadPlugin from automel.plugin)")
    kind = getattr(plugin, "kind", None)
    if kind not in KINDS or not issubclass(plugin, BASES[kind]):
        raise PluginError(f"{plugin.__name__}{source} does not subclass an automel plugin base")
    if not isinstance(getattr(plugin, "name", None), str) or not plugin.name:
        raise PluginError(f"{plugin.__name__}{source} has no name")
    if getattr(plugin, "__abstractmethods__", None):
        missing = ", ".join(sorted(plugin.__abstractmethods__))
        raise PluginError(f"{kind} plugin '{plugin.name}'{source} does not implement {missing}")
    return kind


def _what(obj: Any) -> str:
    """A short, address-free description of an object (``repr`` of a function shows its memory address)."""
    if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__qualname__")):
        kind = "class" if isinstance(obj, type) else "function"
        return f"{kind} {getattr(obj, '__module__', '?')}.{obj.__qualname__}"
    return f"{type(obj).__name__} {obj!r}"[:80]


def autoload_enabled() -> bool:
    """Whether external plugins load by default: unless ``AUTOMEL_DISABLE_PLUGIN_AUTOLOAD`` is set."""
    return os.environ.get(DISABLE_ENV, "") not in ("1", "true", "yes")


def build_registry(autoload: bool | None = None) -> Registry:
    """A fresh registry: the built-ins plus, if ``autoload`` (default: :func:`autoload_enabled`), every
    installed external plugin."""
    registry = Registry()
    registry.load_builtins()
    if (autoload_enabled() if autoload is None else autoload):
        registry.load_entry_points()
    return registry


_default: Registry | None = None


def default_registry() -> Registry:
    """Built-ins plus (unless disabled) every installed external plugin, loaded once per process."""
    global _default
    if _default is None:
        _default = build_registry()
    return _default


def reset_default_registry() -> None:
    """Forget the process-wide registry: the next :func:`default_registry` loads a fresh one.

    For tests, which get a fresh default registry each (so a plugin one test registers never leaks into
    the next), and for a process whose environment (``AUTOMEL_DISABLE_PLUGIN_AUTOLOAD``) changed.
    """
    global _default
    _default = None
