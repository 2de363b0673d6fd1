"""The README's "Add your own encoder" guide, followed literally.

The section's files are the fenced blocks whose preceding line is the file's path in backticks (e.g.
`` `my-encoder/pyproject.toml`: ``); its commands are the lines of its ``bash`` blocks. This test writes the
files into a temporary folder, then runs the commands there in order, with autoload on. Two departures,
both so the project's venv stays untouched and the test stays fast:
- ``pip install -e DIR`` becomes ``pip install --no-deps --no-build-isolation --target SITE DIR`` and SITE
  goes on ``PYTHONPATH`` (a real installed distribution, just not in the venv);
- ``automel search`` gets the hw4-sample data set and a tiny budget appended (later options win).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import optuna

from automel.engine.handle import StudyHandle
from automel.engine.study import open_storage
from tests.conftest import HW4_SAMPLE, need

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Add your own encoder"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.MULTILINE | re.DOTALL)
PATH_LINE = re.compile(r"^`([\w./-]+)`:?$")
TINY_SEARCH = ["--data", "{hw4}", "--trials", "2", "--steps-per-trial", "10", "--pruner", "none",
               "--poolings", "mean", "--heads", "softmax", "--device", "cpu", "--no-refit", "--quality", "fast"]


def section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:] if end < 0 else text[start:end]


def files_and_commands(text: str) -> tuple[dict[str, str], list[list[str]]]:
    """The (path -> content) of the file blocks and the commands of the bash blocks, in order."""
    files: dict[str, str] = {}
    commands: list[list[str]] = []
    for match in FENCE.finditer(text):
        language, body = match.group(1), match.group(2)
        before = [line for line in text[: match.start()].splitlines() if line.strip()]
        path = PATH_LINE.match(before[-1].strip()) if before else None
        if path:
            files[path.group(1)] = body
        elif language == "bash":
            commands += [shlex.split(line, comments=True) for line in body.splitlines() if line.strip()]
    return files, commands


def translate(command: list[str], site: Path) -> list[str]:
    """The README's command as this test runs it (see the module docstring for the two departures)."""
    program, args = command[0], command[1:]
    if program == "pip":
        assert args[:2] == ["install", "-e"], command
        return [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                "--no-compile", "--target", str(site), *args[2:]]
    if program == "pytest":
        return [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    assert program == "automel", command
    if args[0] == "search":
        args += [a.format(hw4=need(HW4_SAMPLE)) for a in TINY_SEARCH]
    return [sys.executable, "-m", "automel", *args]


def test_section_has_the_files_and_the_commands() -> None:
    files, commands = files_and_commands(section())
    assert set(files) == {"my-encoder/pyproject.toml", "my-encoder/my_encoder.py",
                          "my-encoder/tests/test_my_encoder.py"}
    assert '[project.entry-points."automel.encoders"]' in files["my-encoder/pyproject.toml"]
    assert "check_plugin(MyEncoder)" in files["my-encoder/tests/test_my_encoder.py"]
    assert [c[:2] for c in commands] == [["pip", "install"], ["automel", "plugins"], ["pytest", "my-encoder/tests"],
                                         ["automel", "search"]]
    assert "plugins/automel-ecapa/" in section() and "ecapa-tdnn" in section()


def test_following_the_guide_gets_the_encoder_into_a_search(tmp_path: Path) -> None:
    files, commands = files_and_commands(section())
    work, site, home = tmp_path / "work", tmp_path / "site", tmp_path / "home"
    for path, content in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(content, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(site), "AUTOMEL_DISABLE_PLUGIN_AUTOLOAD": "0",
           "AUTOMEL_HOME": str(home), "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    for command in commands:
        if command[:2] == ["automel", "search"]:
            need(HW4_SAMPLE)  # skip here, after the install, the listing and the contract tests passed
        result = subprocess.run(translate(command, site), cwd=work, env=env, capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 0, f"{shlex.join(command)} failed:\n{result.stdout}\n{result.stderr}"
        check_output(command, result.stdout, home)


def check_output(command: list[str], stdout: str, home: Path) -> None:
    """What the README promises each command shows."""
    if command[:2] == ["automel", "plugins"]:
        assert re.search(r"encoder\s+│ my-encoder\s+│ my-encoder 0\.1\.0\s+│ encoder\.my-encoder\.channels\s+│ "
                         r"\{64, 96\}\s+│ \{128, 256, 384\}", stdout), stdout
        assert "failed to load" not in stdout
    elif command[0] == "pytest":
        assert "2 passed" in stdout, stdout
    elif command[:2] == ["automel", "search"]:
        name = command[command.index("--study") + 1]
        study = optuna.load_study(study_name=name, storage=open_storage(StudyHandle(home, name).url, heartbeat=False))
        trials = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        assert len(trials) == 2
        assert all(t.params["encoder"] == "my-encoder" and "encoder.my-encoder.channels" in t.params
                   for t in trials)
