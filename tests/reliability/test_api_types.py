"""The Python API given the wrong types (issue 22, causes 7 and 12): every public argument is checked before
any work and a wrong one is one typed :mod:`automel.errors` exception naming the parameter, never a raw
``TypeError``, ``NotImplementedError`` or NumPy traceback, and nothing is written (no study, no file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import automel
from automel.arguments import MAX_SEED, check_seed
from automel.errors import AutomelError, ConfigError, DataError
from tests.reliability._models import make_model, snapshot, write_tone


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("api") / "model")


@pytest.fixture(scope="module")
def model(model_dir: Path) -> automel.Model:
    return automel.load(model_dir)


def _one_line(caught: pytest.ExceptionInfo[Any], *words: str) -> str:
    message = str(caught.value)
    assert "\n" not in message, message
    for word in words:
        assert word in message, (word, message)
    return message


# --- cause 7: the seed -------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [-1, 2**32, 4294967296, 1.5, "7", True, None])
def test_search_refuses_a_seed_outside_0_to_2_32(tmp_path: Path, hw4_sample: Path, seed: Any) -> None:
    home = tmp_path / "home"
    with pytest.raises(ConfigError) as caught:
        automel.search(hw4_sample, home=home, seed=seed, time_limit=60, trials=1)
    _one_line(caught, "seed", "0 to 4294967295")
    assert not home.exists() or not any(home.rglob("*.db"))


def test_the_seed_check_is_one_function_the_cli_can_call() -> None:
    from automel.seeds import check_seed as cli_check

    assert check_seed(0) == 0 and check_seed(MAX_SEED) == MAX_SEED
    for bad in (-1, 2**32):
        with pytest.raises(ConfigError) as api:
            check_seed(bad)
        with pytest.raises(ConfigError) as cli:
            cli_check(bad, "seed")
        assert str(api.value) == str(cli.value)


# --- cause 12: search's other arguments -----------------------------------------------------------------------


@pytest.mark.parametrize(("options", "words"), [
    ({"max_params": 1.5}, ("max_params", "whole number", "1.5")),
    ({"max_params": "10k"}, ("max_params",)),
    ({"max_latency_ms": float("nan")}, ("max_latency_ms", "finite")),
    ({"trials": "3"}, ("trials", "whole number")),
    ({"keep": 0}, ("keep",)),
    ({"grace_period": 0.5}, ("grace_period",)),
    ({"refit": "no"}, ("refit", "True or False")),
    ({"portfolio": 1}, ("portfolio", "True or False")),
    ({"encoders": [3]}, ("encoders[0]",)),
    ({"encoders": 3}, ("encoders",)),
    ({"formats": 7}, ("formats",)),
    ({"sampler": None}, ("sampler",)),
    ({"study": 5}, ("study",)),
    ({"home": 5}, ("home", "path")),
    ({"progress": "print"}, ("progress",)),
    ({"time_limit": [60]}, ("time_limit",)),
])
def test_search_checks_every_argument_before_any_work(tmp_path: Path, hw4_sample: Path, options: dict[str, Any],
                                                      words: tuple[str, ...]) -> None:
    home = tmp_path / "home"
    with pytest.raises(ConfigError) as caught:
        automel.search(hw4_sample, **{"home": home, "time_limit": 60, "trials": 1, **options})
    _one_line(caught, *words)
    assert not home.exists() or not any(home.rglob("*.db"))


def test_search_refuses_data_that_is_not_a_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        automel.search(42, home=tmp_path / "home")  # type: ignore[arg-type]
    _one_line(caught, "data", "path")
    assert not (tmp_path / "home").exists()


# --- cause 12: load, predict, embed, verify, export -------------------------------------------------------------


@pytest.mark.parametrize("path", [1, None, 2.5, b"/tmp", ["a"]])
def test_load_refuses_what_is_not_a_path(path: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        automel.load(path)
    _one_line(caught, "`path` must be a path")


def test_load_refuses_a_device_that_is_not_a_string(model_dir: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        automel.load(model_dir, device=0)  # type: ignore[arg-type]
    _one_line(caught, "device")


@pytest.mark.parametrize(("inputs", "words"), [
    (None, ("inputs must be", "NoneType")),
    (7, ("inputs must be", "int")),
    ({"a": 1}, ("inputs must be", "dict")),
    ([7], ("input 0", "int")),
    ([None], ("input 0", "NoneType")),
    (np.array([["a"] * 40] * 5, dtype=object), ("dtype object",)),
    (np.zeros((50, 40), dtype=np.int64), ("dtype torch.int64", "expected a float")),
    (np.zeros((50, 40), dtype=np.complex64), ("complex64",)),
    (torch.empty(50, 40, device="meta"), ("meta tensor",)),
    (torch.zeros(50, 40).to_sparse(), ("sparse",)),
    (np.zeros((50, 41), dtype=np.float32), ("shape (50, 41)",)),
])
def test_predict_and_embed_refuse_inputs_of_the_wrong_type(model: automel.Model, inputs: Any,
                                                            words: tuple[str, ...]) -> None:
    for method in (model.predict, model.predict_proba, model.embed):
        with pytest.raises(DataError) as caught:
            method(inputs)
        _one_line(caught, *words)


@pytest.mark.parametrize("top_k", ["3", 0, -1, 1.5, None, True])
def test_top_k_must_be_a_whole_number(model: automel.Model, top_k: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        model.predict(np.full((50, 40), 10.0, dtype=np.float32), top_k=top_k)
    _one_line(caught, "top_k", "whole number")


def test_a_numpy_integer_top_k_is_fine(model: automel.Model) -> None:
    assert len(model.predict(np.full((50, 40), 10.0, dtype=np.float32), top_k=np.int64(2))[0].speakers) == 2


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "ts", "onnx,torchscript"])
def test_export_takes_a_bare_string_as_one_format(model_dir: Path, tmp_path: Path, fmt: str) -> None:
    written = automel.load(model_dir).export(fmt, out=tmp_path)
    expected = {"onnx": {"onnx"}, "torchscript": {"torchscript"}, "ts": {"torchscript"},
                "onnx,torchscript": {"onnx", "torchscript"}}[fmt]
    assert set(written) == expected and all(p.is_file() for p in written.values())


@pytest.mark.parametrize(("formats", "error", "words"), [
    (7, ConfigError, ("formats",)),
    ([7], ConfigError, ("formats[0]",)),
    ([], ConfigError, ("names no format",)),
    ("o", AutomelError, ("unknown export format 'o'",)),
])
def test_export_refuses_formats_of_the_wrong_type(model_dir: Path, tmp_path: Path, formats: Any, error: type,
                                                  words: tuple[str, ...]) -> None:
    before = snapshot(model_dir)
    with pytest.raises(error) as caught:
        automel.load(model_dir).export(formats, out=tmp_path / "out")
    _one_line(caught, *words)
    assert snapshot(model_dir) == before and not (tmp_path / "out").exists()


def test_export_refuses_an_out_that_is_not_a_path(model: automel.Model, model_dir: Path) -> None:
    before = snapshot(model_dir)
    with pytest.raises(ConfigError) as caught:
        model.export("torchscript", out=3)  # type: ignore[arg-type]
    _one_line(caught, "out", "path")
    assert snapshot(model_dir) == before


def test_verify_and_save_refuse_what_is_not_a_path(model: automel.Model, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        model.verify(None)  # type: ignore[arg-type]
    _one_line(caught, "trials", "path")
    clip = write_tone(tmp_path / "a.wav", 0.5)
    with pytest.raises(ConfigError) as caught:
        model.embed(clip).save(5)  # type: ignore[arg-type]
    _one_line(caught, "out", "path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


@pytest.mark.parametrize(("options", "words"), [({"top": "3"}, ("top",)), ({"home": 3}, ("home",)),
                                                ({"storage": 3}, ("storage",))])
def test_leaderboard_checks_its_arguments(tmp_path: Path, options: dict[str, Any], words: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as caught:
        automel.leaderboard("s", **{"home": tmp_path, **options})
    _one_line(caught, *words)
