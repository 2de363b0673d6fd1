"""``automel plugins`` in-process (built-ins only), and the library behind it (``automel.plugin_info``)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from typer.testing import CliRunner

from automel import __version__
from automel import registry as registry_module
from automel.plugin_info import describe_plugins, format_distribution, probe_space
from automel.registry import LoadFailure, Registry
from automel.testing.plugins import BranchyEncoder, BrokenSpaceEncoder
from tests.conftest import run

BUILTINS = {"encoder": ["conformer", "tdnn", "transformer"], "pooling": ["attentive-stats", "mean", "self-attention"],
            "head": ["aam-softmax", "am-softmax", "softmax"]}


def row(stdout: str, *cells: str) -> bool:
    """Whether a table row holds ``cells`` in consecutive columns."""
    return re.search(r"\s+│ ".join(re.escape(c) for c in cells), stdout) is not None


def test_lists_every_builtin_with_distribution_version_and_ranges(cli: CliRunner) -> None:
    code, stdout, stderr = run(cli, "plugins")
    assert code == 0, stderr
    for kind, names in BUILTINS.items():
        for name in names:
            assert row(stdout, kind, name, f"automel {__version__}"), f"{kind} {name} missing:\n{stdout}"
    # the ranges are the plugins' own, per scale: cpu column first, then gpu
    assert row(stdout, "encoder.transformer.d_model", "{64, 80, 96}", "{64, 80, 128, 192, 256}")
    assert row(stdout, "encoder.transformer.dim_feedforward", "int 128..384 log", "int 128..1024 log")
    assert row(stdout, "head.aam-softmax.margin", "float 0.1..0.5", "float 0.1..0.5")
    assert row(stdout, "mean", f"automel {__version__}", "(no parameters)")
    assert "range (cpu scale)" in stdout and "range (gpu scale)" in stdout
    assert "external plugins are not loaded: AUTOMEL_DISABLE_PLUGIN_AUTOLOAD is set" in stdout
    assert "failed to load" not in stdout


def test_kind_and_scale_narrow_the_table(cli: CliRunner) -> None:
    code, stdout, _ = run(cli, "plugins", "--kind", "encoder", "--scale", "gpu")
    assert code == 0
    assert row(stdout, "encoder.conformer.kernel_size", "{7, 15, 31}")
    assert "range (gpu scale)" in stdout and "range (cpu scale)" not in stdout
    assert "softmax" not in stdout and "pooling" not in stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--scale", "tpu"], "error: --scale 'tpu' is not one of cpu, gpu"),
    (["--kind", "encoders"], "error: --kind 'encoders' is not one of encoder, pooling, head"),
])
def test_bad_option_values_give_one_line(cli: CliRunner, args: list[str], message: str) -> None:
    code, stdout, stderr = run(cli, "plugins", *args)
    assert code == 2
    assert stderr.strip().splitlines() == [message]
    assert stdout == ""


@pytest.fixture
def troubled_registry(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """Built-ins, a plugin whose suggest() raises and a recorded load failure, as `plugins` will see them."""
    registry = Registry()
    registry.load_builtins()
    registry.register(BrokenSpaceEncoder, "automel-broken", "9.9")
    registry.failures.append(LoadFailure("head", "arc", "automel-arc", "ImportError: no module named arc", "1.2"))
    monkeypatch.setattr(registry_module, "default_registry", lambda: registry)
    return registry


def test_failures_are_listed_below_and_strict_exits_1(cli: CliRunner, troubled_registry: Registry) -> None:
    code, stdout, _ = run(cli, "plugins")
    assert code == 0
    assert "head plugin 'arc' from automel-arc 1.2 failed to load: ImportError: no module named arc" in stdout
    assert row(stdout, "broken-space", "automel-broken 9.9", "",
               "suggest() at cpu scale raised ValueError: no space today")
    assert row(stdout, "encoder", "transformer", f"automel {__version__}")  # the rest is still listed
    code, _, _ = run(cli, "plugins", "--strict")
    assert code == 1
    code, _, _ = run(cli, "plugins", "--strict", "--kind", "pooling")  # neither problem is a pooling
    assert code == 0


def test_probe_space_reaches_conditional_branches_at_each_scale() -> None:
    gpu = probe_space(BranchyEncoder, "gpu")
    assert gpu == {"encoder.branchy.layers": IntDistribution(1, 3),
                   "encoder.branchy.width": IntDistribution(8, 64, step=8)}
    assert probe_space(BranchyEncoder, "cpu")["encoder.branchy.layers"] == IntDistribution(1, 2)


def test_describe_plugins_in_registry_order() -> None:
    registry = Registry()
    registry.load_builtins()
    infos = describe_plugins(registry, ("pooling",), ("gpu",))
    assert [i.name for i in infos] == BUILTINS["pooling"]
    assert infos[0].params() == ["pooling.attentive-stats.hidden"]
    assert infos[1].params() == [] and infos[1].error is None


@pytest.mark.parametrize(("distribution", "text"), [
    (IntDistribution(1, 4), "int 1..4"),
    (IntDistribution(128, 1024, log=True), "int 128..1024 log"),
    (IntDistribution(8, 64, step=8), "int 8..64 step 8"),
    (FloatDistribution(0.0, 0.3), "float 0..0.3"),
    (FloatDistribution(3e-4, 5e-3, log=True), "float 0.0003..0.005 log"),
    (FloatDistribution(0.0, 1.0, step=0.25), "float 0..1 step 0.25"),
    (CategoricalDistribution([None, 128, "global", False]), "{None, 128, global, False}"),
])
def test_format_distribution(distribution: Any, text: str) -> None:
    assert format_distribution(distribution) == text
