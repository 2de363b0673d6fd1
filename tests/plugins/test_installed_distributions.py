"""External plugins from REAL installed distributions, and every way one can go wrong.

Each distribution is what pip leaves behind: a module plus ``NAME-VERSION.dist-info/`` (METADATA,
entry_points.txt, RECORD) in a folder put on ``PYTHONPATH`` of an ``automel`` subprocess with autoload on,
so ``importlib.metadata`` finds them exactly as it finds installed packages. A broken plugin is one line
naming its distribution; built-ins and the good plugin keep working in ``plugins``, ``train`` and
``search``; a study that needs a plugin that is gone stops before training.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from automel import __version__
from automel.engine.handle import StudyHandle
from automel.engine.study import open_storage
from tests.conftest import HW4_SAMPLE, need

# automel's tiny fake encoder, renamed: a valid plugin (``encoder.good.width``, int 8..32 log).
GOOD_MODULE = '''
from automel.testing.plugins import FakeEncoder


class Good(FakeEncoder):
    name = "good"
'''
DUP_MODULE = GOOD_MODULE.replace('"good"', '"dup"')

MISFIT_MODULE = '''
from torch import nn

from automel.pooling.mean import MeanPooling


class NotAPlugin(nn.Module):
    name = "nobase"


class Pool(MeanPooling):
    name = "pool-in-encoders"
'''

ENCODERS = "automel.encoders"
# name -> (version, {module: source}, {entry point: target}) in the automel.encoders group
DISTS: dict[str, tuple[str, dict[str, str], dict[str, str]]] = {
    "automel-good": ("0.3.1", {"automel_good": GOOD_MODULE}, {"good": "automel_good:Good"}),
    "automel-boom": ("0.1.0", {"automel_boom": 'raise RuntimeError("needs the boom toolkit")\n'},
                     {"boom": "automel_boom:Boom"}),
    "automel-func": ("0.2.0", {"automel_func": "def make_encoder():\n    return None\n"},
                     {"func": "automel_func:make_encoder"}),
    "automel-misfit": ("0.1.0", {"automel_misfit": MISFIT_MODULE},
                       {"nobase": "automel_misfit:NotAPlugin", "pool-in-encoders": "automel_misfit:Pool"}),
    "automel-dup-a": ("1.0.0", {"automel_dup_a": DUP_MODULE}, {"dup": "automel_dup_a:Good"}),
    "automel-dup-b": ("2.0.0", {"automel_dup_b": DUP_MODULE}, {"dup": "automel_dup_b:Good"}),
    "automel-clash": ("0.1.0", {"automel_clash": GOOD_MODULE.replace('"good"', '"conformer"')},
                      {"conformer": "automel_clash:Good"}),
}

# Each case installs the good plugin plus the broken ones, and expects these failure lines (regexes).
CASES: dict[str, tuple[list[str], list[str]]] = {
    "import-error": (["automel-boom"], [
        r"encoder plugin 'boom' from automel-boom 0\.1\.0 failed to load: RuntimeError: needs the boom toolkit"]),
    "function": (["automel-func"], [
        r"encoder plugin 'func' from automel-func 0\.2\.0 failed to load: function automel_func\.make_encoder "
        r"is not an automel plugin class \(subclass EncoderPlugin, PoolingPlugin or HeadPlugin "
        r"from automel\.plugin\)"]),
    "not-a-plugin-class": (["automel-misfit"], [
        r"encoder plugin 'nobase' from automel-misfit 0\.1\.0 failed to load: class automel_misfit\.NotAPlugin "
        r"is not an automel plugin class \(subclass EncoderPlugin, PoolingPlugin or HeadPlugin from automel\.plugin\)",
        r"encoder plugin 'pool-in-encoders' from automel-misfit 0\.1\.0 failed to load: Pool is a pooling "
        r"plugin, declared in the 'automel\.encoders' entry-point group; declare it in 'automel\.poolings'"]),
    "duplicate": (["automel-dup-a", "automel-dup-b", "automel-clash"], [
        r"encoder plugin 'dup' from automel-dup-a and automel-dup-b failed to load: both register this name, "
        r"so neither is loaded; uninstall one of them",
        r"encoder plugin 'conformer' from automel-clash 0\.1\.0 failed to load: the name is taken by automel's "
        r"built-in encoder; rename the plugin"]),
    "good-only": ([], []),
}

FAST = ["--poolings", "mean", "--heads", "softmax", "--device", "cpu"]
TINY = ["--trials", "2", "--steps-per-trial", "10", "--pruner", "none", "--no-refit", "--quality", "fast"]


def install(site: Path, name: str) -> None:
    """Write distribution ``name`` into ``site`` as pip would: its modules and a dist-info folder."""
    version, modules, eps = DISTS[name]
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source, encoding="utf-8")
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8")
    lines = [f"{ep} = {target}" for ep, target in eps.items()]
    (info / "entry_points.txt").write_text(f"[{ENCODERS}]\n" + "\n".join(lines) + "\n", encoding="utf-8")
    (info / "RECORD").write_text("", encoding="utf-8")


def make_site(root: Path, names: list[str]) -> Path:
    site = root / "site"
    site.mkdir(parents=True)
    for name in names:
        install(site, name)
    return site


def automel(*args: object, site: Path | None, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m automel ARGS`` with ``site`` on PYTHONPATH and external plugin loading on."""
    env = {**os.environ, "AUTOMEL_DISABLE_PLUGIN_AUTOLOAD": "0", "AUTOMEL_HOME": str(home), "COLUMNS": "200",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(site) if site else ""}
    return subprocess.run([sys.executable, "-m", "automel", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def failure_lines(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if line.startswith("  ") and "failed to load:" in line]


def assert_row(stdout: str, kind: str, name: str, source: str, first_param: str, first_range: str) -> None:
    """The plugin's first table row: kind, name, distribution + version, first parameter and its range."""
    cells = [re.escape(c) for c in (kind, name, source, first_param, first_range)]
    assert re.search(r"\s+│ ".join(cells), stdout), f"no row {kind}/{name} from {source}:\n{stdout}"


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One automel home for the module's subprocesses, so the hw4-sample feature cache is built once."""
    return tmp_path_factory.mktemp("home")


@pytest.mark.parametrize("case", list(CASES))
def test_plugins_lists_one_line_per_broken_distribution(case: str, tmp_path: Path, home: Path) -> None:
    broken, expected = CASES[case]
    site = make_site(tmp_path, ["automel-good", *broken])
    result = automel("plugins", site=site, home=home)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = failure_lines(result.stdout)
    assert len(lines) == len(expected), lines
    for pattern in expected:  # one line each, in any order (it follows the order of sys.path listings)
        assert [line for line in lines if re.fullmatch(pattern, line)], f"no line matches {pattern!r}: {lines}"
    # the rest works: built-ins with their version and ranges, and the good external plugin
    assert_row(result.stdout, "encoder", "good", "automel-good 0.3.1", "encoder.good.width", "int 8..32 log")
    assert_row(result.stdout, "encoder", "transformer", f"automel {__version__}", "encoder.transformer.d_model",
               "{64, 80, 96}")
    assert_row(result.stdout, "encoder", "conformer", f"automel {__version__}", "encoder.conformer.d_model",
               "{64, 96}")
    assert_row(result.stdout, "head", "softmax", f"automel {__version__}", "head.softmax.hidden",
               "{None, 128, 256, 512}")


@pytest.fixture(scope="module")
def everything(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site holding every distribution above: the good plugin among all the broken ones."""
    return make_site(tmp_path_factory.mktemp("everything"), list(DISTS))


@pytest.fixture(scope="module")
def external_study(everything: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """A tiny search over the good external encoder only, next to every broken distribution."""
    return automel("search", "--data", need(HW4_SAMPLE), "--study", "ext", "--encoders", "good", *FAST, *TINY,
                   site=everything, home=home)


def errors(stderr: str) -> list[str]:
    """stderr without the warning line about the broken distributions that sit beside the good one."""
    return [line for line in stderr.strip().splitlines() if not line.startswith("warning:")]


def load(home: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(StudyHandle(home, name).url, heartbeat=False))


def test_search_with_the_good_external_encoder_among_broken_ones(
        external_study: subprocess.CompletedProcess[str], home: Path) -> None:
    assert external_study.returncode == 0, external_study.stderr
    warning = [line for line in external_study.stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "failed to load and are left out" in warning[0] and "automel plugins" in warning[0]
    trials = load(home, "ext").get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 2
    assert {t.params["encoder"] for t in trials} == {"good"}
    assert all(8 <= t.params["encoder.good.width"] <= 32 for t in trials)


def test_train_with_the_good_external_encoder_among_broken_ones(everything: Path, home: Path,
                                                                tmp_path: Path) -> None:
    config = tmp_path / "good.json"
    config.write_text(json.dumps({"encoder": "good", "pooling": "mean", "head": "softmax",
                                  "encoder.good.width": 12}), encoding="utf-8")
    out = tmp_path / "run"
    result = automel("train", "--config", config, "--data", need(HW4_SAMPLE), "--steps", 10, "--valid-every", 10,
                     "--device", "cpu", "--out", out, site=everything, home=home)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "config.json").read_text())["params"]["encoder.good.width"] == 12


def test_asking_for_a_broken_plugin_names_its_distribution_and_error(everything: Path, home: Path) -> None:
    result = automel("search", "--data", need(HW4_SAMPLE), "--study", "boom", "--encoders", "boom", *FAST, *TINY,
                     site=everything, home=home)
    assert result.returncode == 2
    assert errors(result.stderr) == [
        "error: encoder plugin 'boom' from automel-boom 0.1.0 failed to load: RuntimeError: needs the boom toolkit"]
    assert not (home / "boom.db").exists()


@pytest.mark.parametrize("encoders", [["--encoders", "good"], []], ids=["same-command", "no-encoders-option"])
def test_resume_without_the_plugin_stops_before_training(
        external_study: subprocess.CompletedProcess[str], home: Path, encoders: list[str]) -> None:
    assert external_study.returncode == 0, external_study.stderr
    before = len(load(home, "ext").get_trials(deepcopy=False))
    result = automel("search", "--data", need(HW4_SAMPLE), "--study", "ext", *encoders, *FAST, *TINY[2:],
                     "--trials", 4, site=None, home=home)
    assert result.returncode == 2, result.stdout
    lines = errors(result.stderr)
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    # With or without --encoders, the study's frozen plugin list is what names the missing plugin.
    assert lines[0].startswith("error: this study needs encoder 'good', which is not installed"), lines[0]
    assert lines[0].endswith("install the package that provides it, or start a new study with --study NAME")
    assert len(load(home, "ext").get_trials(deepcopy=False)) == before
