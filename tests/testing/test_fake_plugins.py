"""The fake plugins of ``automel.testing.plugins`` are what their docstrings say they are."""

from __future__ import annotations

import pytest
import torch

from automel.errors import PluginError
from automel.plugin import Plugin
from automel.registry import Registry
from automel.testing import check_plugin
from automel.testing.plugins import (
    AbstractEncoder,
    BranchyEncoder,
    BrokenSpaceEncoder,
    FakeEncoder,
    FakeHead,
    FixedWidthPooling,
    FlakyConfig,
    FlakyEncoder,
    LeakyPooling,
    LyingPooling,
    NoOutDimEncoder,
    leaky_norm_encoder,
)

REGISTRABLE: list[type[Plugin]] = [FakeEncoder, FakeHead, BranchyEncoder, BrokenSpaceEncoder, FlakyEncoder,
                                   NoOutDimEncoder, LyingPooling, FixedWidthPooling, LeakyPooling,
                                   leaky_norm_encoder("outputs")]


@pytest.mark.parametrize("plugin", [FakeEncoder, FakeHead, BranchyEncoder], ids=lambda p: f"{p.kind}:{p.name}")
def test_valid_fakes_pass_the_contract_kit(plugin: type[Plugin]) -> None:
    check_plugin(plugin)


def test_every_fake_but_the_abstract_one_registers() -> None:
    registry = Registry()
    for plugin in REGISTRABLE:
        registry.register(plugin, "automel-test-fakes")
    with pytest.raises(PluginError, match="does not implement build"):
        registry.register(AbstractEncoder, "automel-test-fakes")


def test_flaky_encoder_explodes_only_in_training() -> None:
    x, mask = torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)
    module = FlakyEncoder.build(FlakyConfig(width=8, explode=True), 4)
    assert module.eval()(x, mask).shape == (2, 5, 8)
    with pytest.raises(RuntimeError, match="exploded on purpose"):
        module.train()(x, mask)


def test_unknown_leak_is_refused() -> None:
    with pytest.raises(ValueError, match="one of outputs, buffers, random, none"):
        leaky_norm_encoder("everywhere")
