"""The command itself: fast start (no heavy imports for --help), every command listed, clean errors."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from tests.conftest import run


def test_help_does_not_import_torch_or_optuna() -> None:
    # `automel --help` must answer at once; torch and optuna take seconds to import.
    code = ("import sys; from automel.cli import app; from typer.testing import CliRunner; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'optuna', 'numpy', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_every_command_is_listed(cli: CliRunner) -> None:
    code, stdout, _ = run(cli, "--help")
    assert code == 0
    for command in ("data", "train", "predict", "score", "search", "export", "studies", "show", "dashboard", "plugins",
                    "worker"):
        assert command in stdout
    code, stdout, _ = run(cli, "data", "--help")
    assert code == 0 and all(c in stdout for c in ("check", "prepare", "synth"))


def test_python_dash_m_runs_the_same_app() -> None:
    result = subprocess.run([sys.executable, "-m", "automel", "score", "missing.csv", "also-missing.csv"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "missing.csv" in result.stderr and "Traceback" not in result.stderr
