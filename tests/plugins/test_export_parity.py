"""Every plugin, built-in or installed, exports: ``automel.testing.check_export`` on each.

Each plugin is built into a small model with the built-in companions (``transformer`` + ``mean`` +
``softmax``, the plugin taking its own kind's place), written as ONNX and as TorchScript, and run on padded
batches of other sizes than it was traced with: logits and embeddings must match PyTorch to 1e-4. A plugin
that cannot take a format fails here with the exporter's reason (e.g. ``UnsupportedOperatorError:
Exporting the operator 'aten::i0' ...``, or the size of the parity gap). Plugins come from an explicit
registry with autoload on, as in ``test_contract.py``.
"""

from __future__ import annotations

import functools
from typing import Any

import pytest

from automel import testing
from automel.exporting import FORMATS
from automel.plugin import KINDS, Plugin
from automel.registry import Registry, build_registry

pytest.importorskip("onnxruntime", reason="ONNX export is the automel[onnx] extra: pip install 'automel[onnx]'")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

N_SAMPLED = 1  # configs drawn from each plugin's own search space, besides its defaults


@functools.cache
def installed() -> Registry:
    return build_registry(autoload=True)


def _cases() -> list[Any]:
    cases = []
    for kind in KINDS:
        for entry in installed().entries(kind):
            plugin = entry.plugin
            configs = [("default", plugin.config_cls())]
            configs += [(f"sampled{i}", cfg) for i, (_, cfg) in enumerate(testing.sample_configs(plugin, N_SAMPLED))]
            for config_name, config in configs:
                for fmt in FORMATS:
                    cases.append(pytest.param(plugin, config, fmt, id=f"{kind}:{plugin.name}-{config_name}-{fmt}"))
    return cases


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if {"plugin", "config", "fmt"} <= set(metafunc.fixturenames):
        metafunc.parametrize(("plugin", "config", "fmt"), _cases())


def test_plugin_exports_with_parity(plugin: type[Plugin], config: Any, fmt: str) -> None:
    testing.check_export(plugin, config, formats=[fmt])


def test_every_builtin_is_exported() -> None:
    names = {f"{kind}:{entry.plugin.name}" for kind in KINDS for entry in installed().entries(kind)}
    assert {"encoder:transformer", "encoder:conformer", "encoder:tdnn", "pooling:mean", "pooling:self-attention",
            "pooling:attentive-stats", "head:softmax", "head:am-softmax", "head:aam-softmax"} <= names
