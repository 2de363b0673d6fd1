"""A model from Python (:func:`automel.load`, :class:`automel.Model`): what the ``embed``, ``verify`` and
``predict MODEL FILES`` commands call, on the 4-step model the package's fixture trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from typer.testing import CliRunner

import automel
import automel.api
from automel.errors import ConfigError, DataError
from automel.inference import collect_inputs
from automel.long_inputs import window_frames
from automel.verification import read_trials
from tests.conftest import run


def test_a_long_input_is_told_to_the_progress_callback(trained: automel.api.TrainRun) -> None:
    lines: list[str] = []
    model = automel.load(trained.path, progress=lines.append)
    long = np.zeros((3 * window_frames(model.config), model.inference.record.n_mels), dtype=np.float32)  # 50 % overlap
    model.predict([long, long[:50]])
    assert len(lines) == 1 and lines[0].startswith("0: ")
    assert lines[0].endswith("s long: it runs in 5 overlapping windows, whose outputs are averaged"), lines
    assert automel.load(trained.path).inference.on_windows is None  # silent without a callback


def test_collected_inputs_are_taken_as_they_are(trained: automel.api.TrainRun, hw4_sample: Path) -> None:
    model = automel.load(trained.path)
    items = collect_inputs([hw4_sample])
    embeddings = model.embed(items)
    assert embeddings.ids == [item.id for item in items] and embeddings.vectors.shape[0] == len(items)
    assert [p.id for p in model.predict(items[:3])] == [item.id for item in items[:3]]


def test_embeddings_save_records_metadata_in_safetensors(trained: automel.api.TrainRun, hw4_sample: Path,
                                                        tmp_path: Path) -> None:
    embeddings = automel.load(trained.path).embed(sorted(hw4_sample.glob("*.pt"))[:2])
    written = embeddings.save(tmp_path / "e.safetensors", metadata={"model": "run"})
    assert written == [tmp_path / "e.safetensors"]
    with safe_open(str(written[0]), framework="numpy") as fh:
        meta = fh.metadata()
        assert meta["model"] == "run" and json.loads(meta["ids"]) == embeddings.ids
        assert np.array_equal(fh.get_tensor("embeddings"), embeddings.vectors)


def test_verify_takes_a_trial_list_or_its_path(trained: automel.api.TrainRun, hw4_sample: Path,
                                               tmp_path: Path) -> None:
    first, second, third = sorted(hw4_sample.glob("*.pt"))[:3]
    trials = tmp_path / "trials.txt"
    trials.write_text(f"1 {first} {first}\n0 {first} {second}\n0 {second} {third}\n")
    model = automel.load(trained.path)
    by_path, by_list = model.verify(trials), model.verify(read_trials(trials))
    assert np.allclose(by_path.scores, by_list.scores) and by_path.scores[0] == pytest.approx(1.0, abs=1e-5)
    assert by_path.eer is not None and 0.0 <= by_path.eer <= 1.0


@pytest.mark.parametrize(("call", "error", "words"), [
    (lambda model: model.predict(None), DataError, "inputs must be a path, a NumPy array or tensor"),
    (lambda model: model.predict({"a": 1}), DataError, "got dict"),
    (lambda model: model.export([]), ConfigError, "`formats` names no format"),
    (lambda model: model.verify(3), ConfigError, "`trials` must be a path"),
])
def test_bad_arguments_are_one_typed_line(trained: automel.api.TrainRun, call: object, error: type,
                                          words: str) -> None:
    with pytest.raises(error) as caught:
        call(automel.load(trained.path))  # type: ignore[operator]
    assert str(caught.value).startswith(words) or words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_load_refuses_a_callback_that_is_not_one(trained: automel.api.TrainRun) -> None:
    with pytest.raises(ConfigError, match="`progress` must be a function taking one line of text, or None"):
        automel.load(trained.path, progress="print")  # type: ignore[arg-type]


def test_embed_through_the_cli_records_the_model_it_used(cli: CliRunner, trained: automel.api.TrainRun,
                                                         hw4_sample: Path, tmp_path: Path) -> None:
    features = sorted(hw4_sample.glob("*.pt"))[:2]
    code, stdout, stderr = run(cli, "embed", trained.path, *features, "--out", tmp_path / "e.safetensors",
                               "--device", "cpu")
    assert code == 0, stderr
    assert "wrote 2 embeddings of dimension " in stdout
    with safe_open(str(tmp_path / "e.safetensors"), framework="numpy") as fh:
        assert fh.metadata()["model"] == str(trained.path)
