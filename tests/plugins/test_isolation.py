"""The core suite runs with the built-ins only, and each test gets a fresh default registry.

``tests/conftest.py`` turns external autoload off before any test module is imported and resets the
default registry around every test; tests that want installed plugins build their own registry.
"""

from __future__ import annotations

import os

import pytest

from automel.plugin import KINDS
from automel.registry import BUILTIN_DIST, DISABLE_ENV, build_registry, default_registry
from automel.testing.plugins import FakeEncoder


def test_default_registry_holds_the_builtins_only() -> None:
    assert os.environ[DISABLE_ENV] == "1"
    registry = default_registry()
    for kind in KINDS:
        assert {entry.distribution for entry in registry.entries(kind)} == {BUILTIN_DIST}
        assert registry.names(kind) == build_registry(autoload=False).names(kind)
    assert registry.failures == []


def test_installed_plugins_stay_out_of_the_default_registry() -> None:
    installed = build_registry(autoload=True)
    external = [(kind, entry.plugin.name) for kind in KINDS for entry in installed.entries(kind)
                if entry.distribution != BUILTIN_DIST]
    if not external:
        pytest.skip("no external plugin package is installed (this repository's venv has automel-ecapa)")
    registry = default_registry()
    assert [(kind, name) for kind, name in external if name in registry.names(kind)] == []


@pytest.mark.parametrize("run", [1, 2])
def test_a_plugin_registered_by_one_test_is_gone_in_the_next(run: int) -> None:
    """Each run registers the same plugin and does not clean up: the second finds it gone all the same."""
    registry = default_registry()
    assert "fake" not in registry.names("encoder")
    registry.register(FakeEncoder, "tests")
    assert default_registry().get("encoder", "fake") is FakeEncoder
