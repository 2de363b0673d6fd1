"""The distribution is installed and automel finds its entry point, in-process and from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import distribution

from automel_ecapa import EcapaTdnn, __version__

from automel.registry import Registry


def test_entry_point_names_the_distribution_and_version() -> None:
    registry = Registry()
    registry.load_entry_points()
    entry = registry.entry("encoder", "ecapa-tdnn")
    assert entry.plugin is EcapaTdnn
    assert (entry.distribution, entry.version) == ("automel-ecapa", "0.1.0")
    assert not [f for f in registry.failures if f.distribution == "automel-ecapa"]
    assert __version__ == distribution("automel-ecapa").version == "0.1.0"


def test_cli_lists_the_plugin_with_both_scales() -> None:
    env = {**os.environ, "COLUMNS": "250"}
    result = subprocess.run([sys.executable, "-m", "automel", "plugins", "--kind", "encoder", "--strict"],
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "ecapa-tdnn" in result.stdout and "automel-ecapa 0.1.0" in result.stdout
    assert "{64, 96, 128}" in result.stdout and "{256, 512, 768, 1024}" in result.stdout
