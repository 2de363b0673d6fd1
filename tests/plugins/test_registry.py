"""The registry (fresh ``Registry()`` objects) and the config round trip of ``from_params``."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import EntryPoint
from typing import Any

import pytest
from torch import nn

from automel import registry as registry_module
from automel.encoders import Conformer, Transformer
from automel.errors import PluginError
from automel.heads import AMSoftmax, Softmax
from automel.registry import Registry, build_registry, default_registry, reset_default_registry
from automel.testing import check_plugin
from automel.testing.plugins import AbstractEncoder, FakeEncoder


def test_register_and_get() -> None:
    registry = Registry()
    registry.register(FakeEncoder, "automel-fake", "1.0")
    assert registry.get("encoder", "fake") is FakeEncoder
    assert registry.entry("encoder", "fake").distribution == "automel-fake"
    assert registry.names("encoder") == ["fake"]


def test_duplicate_name_names_both_distributions() -> None:
    registry = Registry()
    registry.register(FakeEncoder, "automel-fake")
    with pytest.raises(PluginError) as info:
        registry.register(FakeEncoder, "automel-other")
    assert "automel-fake" in str(info.value) and "automel-other" in str(info.value)
    assert "'fake'" in str(info.value)


def test_builtin_clash_names_automel() -> None:
    registry = Registry()
    registry.load_builtins()

    class Clash(FakeEncoder):
        name = "conformer"

    with pytest.raises(PluginError, match=r"by automel and by automel-clash"):
        registry.register(Clash, "automel-clash")


@pytest.mark.parametrize("thing", [int, object(), "transformer", nn.Linear])
def test_non_plugin_rejected(thing: Any) -> None:
    with pytest.raises(PluginError, match="not an automel plugin class"):
        Registry().register(thing, "somewhere")


def test_abstract_plugin_rejected() -> None:
    with pytest.raises(PluginError, match="does not implement build"):
        Registry().register(AbstractEncoder, "somewhere")


def test_unknown_name_lists_installed() -> None:
    registry = Registry()
    registry.load_builtins()
    with pytest.raises(PluginError) as info:
        registry.get("encoder", "lstm")
    message = str(info.value)
    assert "'lstm'" in message and "conformer, tdnn, transformer" in message
    with pytest.raises(PluginError, match="am-softmax"):
        registry.get("head", "arcface")


def test_from_params_rejects_unknown_field_naming_it() -> None:
    with pytest.raises(PluginError) as info:
        Conformer.from_params({"encoder.conformer.num_layer": 2})
    assert "'num_layer'" in str(info.value) and "num_layers" in str(info.value)


def test_from_params_coerces_json_numbers() -> None:
    config = Conformer.from_params({"encoder.conformer.num_layers": 4.0, "encoder.conformer.dropout": 0})
    assert config.num_layers == 4 and type(config.num_layers) is int
    assert config.dropout == 0.0 and type(config.dropout) is float
    with pytest.raises(PluginError, match="kernel_size"):
        Conformer.from_params({"encoder.conformer.kernel_size": 4.5})


def test_from_params_ignores_other_plugins_and_fills_defaults() -> None:
    params = {"encoder.conformer.num_layers": 7, "train.lr": 1e-3, "encoder.transformer.nhead": 4}
    assert Transformer.from_params(params) == Transformer.config_cls(nhead=4)
    assert Softmax.from_params({"head.softmax.hidden": None}).hidden is None
    assert AMSoftmax.from_params({}) == AMSoftmax.config_cls()


@pytest.mark.parametrize(
    "params",
    [
        {"encoder.transformer.d_model": 80, "encoder.transformer.nhead": 3},
        {"encoder.transformer.num_layers": 0},
    ],
)
def test_from_params_rejects_invalid_values(params: dict[str, Any]) -> None:
    with pytest.raises(PluginError, match="invalid parameters"):
        Transformer.from_params(params)


def test_external_plugin_passes_the_contract_kit() -> None:
    check_plugin(FakeEncoder)


# --- entry points and the autoload switch -------------------------------------------------------

GOOD = EntryPoint("fake", "automel.testing.plugins:FakeEncoder", "automel.encoders")
BROKEN = EntryPoint("broken", "automel_no_such_module:Plugin", "automel.encoders")


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Installed plugins, as the registry sees them; the cached default registry is reset around it."""

    def entry_points(group: str) -> list[EntryPoint]:
        return [GOOD, BROKEN] if group == "automel.encoders" else []

    monkeypatch.setattr(registry_module, "entry_points", entry_points)
    reset_default_registry()
    yield
    reset_default_registry()


def test_entry_points_loaded_and_failures_recorded(fake_entry_points: None) -> None:
    registry = Registry()
    registry.load_builtins()
    registry.load_entry_points()
    assert registry.get("encoder", "fake") is FakeEncoder
    assert [f.name for f in registry.failures] == ["broken"]
    assert "ModuleNotFoundError" in registry.failures[0].describe()


@pytest.mark.parametrize(("env", "loaded"), [("1", False), ("0", True), ("", True)])
def test_autoload_switch(
    fake_entry_points: None, monkeypatch: pytest.MonkeyPatch, env: str, loaded: bool
) -> None:
    monkeypatch.setenv("AUTOMEL_DISABLE_PLUGIN_AUTOLOAD", env)
    reset_default_registry()
    registry = default_registry()
    assert ("fake" in registry.names("encoder")) is loaded
    assert "conformer" in registry.names("encoder")  # built-ins load either way


@pytest.mark.parametrize("autoload", [False, True])
def test_build_registry_ignores_the_switch_when_told(fake_entry_points: None, autoload: bool) -> None:
    """The switch is only the default: an explicit ``autoload`` wins (the core suite runs with it set)."""
    assert ("fake" in build_registry(autoload=autoload).names("encoder")) is autoload
    assert "conformer" in build_registry(autoload=autoload).names("encoder")


def test_default_registry_is_cached_until_reset() -> None:
    first = default_registry()
    assert default_registry() is first
    reset_default_registry()
    assert default_registry() is not first


def test_unregister() -> None:
    registry = Registry()
    registry.register(FakeEncoder, "automel-fake", "1.0")
    entry = registry.unregister("encoder", "fake")
    assert (entry.plugin, entry.distribution) == (FakeEncoder, "automel-fake")
    assert registry.names("encoder") == []
    registry.register(FakeEncoder, "automel-other")  # the name is free again
    with pytest.raises(PluginError, match=r"unknown pooling 'fake' \(installed: none\)"):
        registry.unregister("pooling", "fake")
