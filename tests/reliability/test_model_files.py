"""A hostile or broken ``config.json`` in a model folder (issue 22, cause 4): one line naming the file and the
field, exit 2, nothing written, the model folder unchanged; through predict, embed, verify, export and
``automel.load``. Each case is a field of the schema (:mod:`automel.model_config`), not one encoder's quirk:
the plugins' parameters are bounded by their own search spaces, checked generically.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import automel
from automel.errors import ConfigError
from automel.model_config import MAX_DEPTH, search_bounds
from automel.registry import default_registry
from tests.conftest import run
from tests.reliability._models import edit_config, make_model, snapshot, write_tone
from tests.reliability.test_user_mistakes import one_line_error

Change = Callable[[dict[str, Any]], None]
PREFIX = "encoder.transformer."


def _params(**values: Any) -> Change:
    return lambda c: c["params"].update({PREFIX + k if "." not in k else k: v for k, v in values.items()})


def _features(**values: Any) -> Change:
    return lambda c: c["dataset"]["features"].update(values)


def _top(**values: Any) -> Change:
    return lambda c: c.update(values)


# case: (change to config.json, words the error line must hold besides the file)
CASES: dict[str, tuple[Change, tuple[str, ...]]] = {
    "zero frame shift": (_features(frame_shift_ms=0), ("dataset.features.frame_shift_ms", "got 0")),
    "negative frame shift": (_features(frame_shift_ms=-10), ("dataset.features.frame_shift_ms",)),
    "sub-sample frame shift": (_features(frame_shift_ms=1e-9), ("dataset.features.frame_shift_ms",)),
    "zero sample rate": (_features(sample_rate=0), ("dataset.features.sample_rate",)),
    "bogus window": (_features(window="bogus"), ("dataset.features.window", "'bogus'")),
    "NaN waveform scale": (_features(waveform_scale=float("nan")), ("dataset.features.waveform_scale",)),
    "a million layers": (_params(num_layers=1_000_000), ("params.encoder.transformer.num_layers", "1000000")),
    "a thousand layers": (_params(num_layers=1000), ("params.encoder.transformer.num_layers", "16 times")),
    "a wide model the weights cannot hold": (_params(d_model=2048, dim_feedforward=8192),
                                             ("does not fit the weights",)),
    "negative d_model": (_params(d_model=-16), ("params.encoder.transformer.d_model", "positive")),
    "nhead 0": (_params(nhead=0), ("params.encoder.transformer.nhead", "positive")),
    "dropout 2": (_params(dropout=2), ("params.encoder.transformer.dropout", "[0, 1]")),
    "NaN scale": (_params(**{"head.am-softmax.scale": float("nan")}), ("params.head.am-softmax.scale", "finite")),
    "infinite margin": (_params(**{"head.am-softmax.margin": float("inf")}), ("params.head.am-softmax.margin",)),
    "huge integer": (_params(d_model=10**30), ("params.encoder.transformer.d_model", "out of range")),
    "a list as a size": (_params(d_model=[16]), ("params.encoder.transformer.d_model", "JSON array")),
    "a string as a size": (_params(d_model="16"), ("d_model",)),
    "unknown normalisation": (_params(**{"train.normalize": "loud"}), ("params.train.normalize", "'loud'")),
    "negative n_mels": (_top(n_mels=-40), ("'n_mels'", "got -40")),
    "n_mels as a string": (_top(n_mels="40"), ("'n_mels'", "got '40'")),
    "speakers as a string": (_top(speakers="abc"), ("'speakers'", "list of speaker names", "string")),
    "speakers as an object": (_top(speakers={"a": 0, "b": 1, "c": 2}), ("'speakers'", "object")),
    "duplicate speakers": (_top(speakers=["a", "a", "b"]), ("'speakers'[1]", "twice")),
    "an empty speaker name": (_top(speakers=["a", "", "b"]), ("'speakers'[1]",)),
    "a number as a speaker": (_top(speakers=["a", 7, "b"]), ("'speakers'[1]",)),
    "no speakers": (_top(speakers=[]), ("'speakers'",)),
    "params a list": (_top(params=[1, 2]), ("'params'",)),
    "deep nesting": (_top(extra=json.loads("[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5))), ("nested deeper",)),
}
COMMANDS = ("predict", "embed", "verify", "export")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("pristine") / "model")


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clips")
    write_tone(folder / "a.wav", 0.6)
    write_tone(folder / "b.wav", 0.5)
    (folder / "trials.txt").write_text("1 a.wav b.wav\n0 b.wav a.wav\n")
    return folder


def _broken(pristine: Path, target: Path, change: Change) -> Path:
    shutil.copytree(pristine, target)
    edit_config(target, change)
    return target


def _command(command: str, model: Path, clips: Path, out: Path) -> list[object]:
    return {
        "predict": ["predict", model, clips / "a.wav", "--out", out / "p.csv", "--device", "cpu"],
        "embed": ["embed", model, clips / "a.wav", "--out", out / "e.npy", "--device", "cpu"],
        "verify": ["verify", model, clips / "trials.txt", "--scores", out / "s.txt", "--device", "cpu"],
        "export": ["export", "--model", model, "--format", "torchscript"],
    }[command]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_broken_config_is_one_line_naming_file_and_field(cli: CliRunner, pristine: Path, clips: Path,
                                                           tmp_path: Path, case: str, command: str) -> None:
    change, words = CASES[case]
    model = _broken(pristine, tmp_path / "model", change)
    before = snapshot(model)
    out = tmp_path / "out"
    out.mkdir()
    code, _stdout, stderr = run(cli, *_command(command, model, clips, out))
    one_line_error(code, stderr, model / "config.json", *words)
    assert list(out.iterdir()) == [] and snapshot(model) == before


@pytest.mark.parametrize("case", sorted(CASES))
def test_automel_load_refuses_a_broken_config_with_a_typed_error(pristine: Path, tmp_path: Path, case: str) -> None:
    change, words = CASES[case]
    model = _broken(pristine, tmp_path / "model", change)
    with pytest.raises(ConfigError) as caught:
        automel.load(model)
    message = str(caught.value)
    assert "\n" not in message and str(model / "config.json") in message
    assert all(w in message for w in words), message


@pytest.mark.parametrize(("name", "text", "words"), [
    ("100,000-deep nesting", '{"format": "automel-run/1", "x": ' + "[" * 100_000 + "]" * 100_000 + "}",
     "nested too deeply"),
    ("a 5,000-digit integer", '{"format": "automel-run/1", "n_mels": ' + "4" * 5000 + "}", "not a usable JSON file"),
])
def test_a_config_that_json_itself_chokes_on(cli: CliRunner, pristine: Path, clips: Path, tmp_path: Path,
                                             name: str, text: str, words: str) -> None:
    model = tmp_path / "model"
    shutil.copytree(pristine, model)
    (model / "config.json").write_text(text)
    code, _, stderr = run(cli, "predict", model, clips / "a.wav", "--out", tmp_path / "p.csv", "--device", "cpu")
    one_line_error(code, stderr, model / "config.json", words)
    assert not (tmp_path / "p.csv").exists()


def test_a_sound_config_still_loads_and_predicts(cli: CliRunner, pristine: Path, clips: Path, tmp_path: Path) -> None:
    """The schema refuses nothing automel writes: sizes outside the search space (d_model 16) are fine."""
    code, _stdout, stderr = run(cli, "predict", pristine, clips / "a.wav", "--out", tmp_path / "p.csv",
                               "--device", "cpu")
    assert code == 0, stderr
    assert (tmp_path / "p.csv").read_text().splitlines()[1].split(",")[1] in ("alice", "bob", "carol")


def test_every_plugin_declares_bounds_through_its_search_space() -> None:
    """The bounds come from each registered plugin's own ``suggest``, so a new plugin is covered unlisted."""
    registry = default_registry()
    for kind in ("encoder", "pooling", "head"):
        for name in registry.names(kind):
            plugin = registry.get(kind, name)
            bounds = search_bounds(plugin)
            for param, bound in bounds.items():
                assert param.startswith(f"{kind}.{name}."), param
                assert bound.low <= bound.high
    transformer = search_bounds(registry.get("encoder", "transformer"))
    assert transformer[PREFIX + "num_layers"].low == 1 and transformer[PREFIX + "dropout"].fraction
