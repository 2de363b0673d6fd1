"""``automel.api.predict``: a model's submission for a data set's test utterances, as ``automel predict MODEL
--data DIR`` writes it; refusals are one typed line, before the model is loaded where they can be."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import automel
import automel.api
from automel.errors import ConfigError, DataError
from tests.conftest import run


def test_predict_reproduces_the_runs_own_submission(trained: automel.api.TrainRun, api_home: Path,
                                                   tmp_path: Path, hw4_sample: Path) -> None:
    lines: list[str] = []
    written = automel.predict(trained.path, hw4_sample, tmp_path / "again.csv", device="cpu", home=api_home,
                              progress=lines.append)
    assert written.path == tmp_path / "again.csv" and written.data == hw4_sample and len(written) == 48
    assert written.path.read_text() == (trained.path / "output.csv").read_text()
    assert written.rows[0] == tuple(written.path.read_text().splitlines()[1].split(","))
    assert written.adaptation is None and written.warning is None and lines == []  # trained, not exported: auto = none


def test_predict_defaults_to_the_models_own_data_set(trained: automel.api.TrainRun, api_home: Path,
                                                     tmp_path: Path, hw4_sample: Path) -> None:
    written = automel.api.predict(trained.path, out=tmp_path / "output.csv", device="cpu", home=api_home)
    assert written.data == hw4_sample and written.path.read_text() == (trained.path / "output.csv").read_text()


# A model with statistics to adapt: global feature normalisation and BatchNorm layers (the TDNN's).
TDNN = {"encoder": "tdnn", "encoder.tdnn.channels": 16, "encoder.tdnn.out_channels": 32, "pooling": "mean",
        "head": "softmax", "train.normalize": "global", "train.batch_size": 8, "train.segment_len": 64}


def test_a_loaded_model_adapts_in_a_copy(api_home: Path, tmp_path: Path, hw4_sample: Path) -> None:
    model = automel.api.train(config=TDNN, data=hw4_sample, steps=2, valid_every=2, device="cpu",
                              out=tmp_path / "tdnn", home=api_home).load()
    before = {k: v.clone() for k, v in model.inference.model.state_dict().items()}
    lines: list[str] = []
    written = automel.api.predict(model, out=tmp_path / "o.csv", adapt="test", device="cpu", home=api_home,
                                  progress=lines.append)
    assert written.adaptation is not None and written.adaptation.startswith("adapted ")
    assert lines == [written.adaptation] and len(written) == 48
    after = model.inference.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the caller's model is as it was


def _renamed(data: Path, target: Path, rename: dict[str, str]) -> Path:
    shutil.copytree(data, target)
    meta = json.loads((target / "metadata.json").read_text())
    meta["speakers"] = {rename.get(s, s): items for s, items in meta["speakers"].items()}
    (target / "metadata.json").write_text(json.dumps(meta))
    names = sorted(meta["speakers"])
    (target / "mapping.json").write_text(json.dumps({"speaker2id": {s: i for i, s in enumerate(names)},
                                                     "id2speaker": {str(i): s for i, s in enumerate(names)}}))
    return target


def test_other_speakers_are_refused_unless_allowed(trained: automel.api.TrainRun, api_home: Path, tmp_path: Path,
                                                   hw4_sample: Path) -> None:
    data = _renamed(hw4_sample, tmp_path / "renamed", {"id10010": "newcomer"})
    out = tmp_path / "o.csv"
    with pytest.raises(DataError) as caught:
        automel.api.predict(trained.path, data, out, device="cpu", home=api_home)
    message = str(caught.value)
    assert message.startswith(f"{data}: 2 speakers differ from the model's in {trained.path} (1 only in the data "
                              "set, e.g. newcomer; 1 only in the model, e.g. id10010); pass `allow_unknown_speakers`")
    assert "\n" not in message and not out.exists()
    lines: list[str] = []
    written = automel.api.predict(trained.path, data, out, allow_unknown_speakers=True, device="cpu", home=api_home,
                                  progress=lines.append)
    assert written.warning is not None and written.warning.startswith(f"2 speakers differ between {data} and the model")
    assert lines == [f"warning: {written.warning}"] and len(written) == 48


@pytest.mark.parametrize(("arguments", "error", "words"), [
    (lambda p: {"out": p.data / "answers.csv"}, ConfigError, "`out` {data}/answers.csv: lies inside the data set"),
    (lambda p: {"out": p.model / "output.csv"}, ConfigError, "`out` {model}/output.csv: lies inside the model folder"),
    (lambda p: {"out": p.tmp}, ConfigError, "`out` {tmp}: is a folder; give a file name, such as {tmp}/output.csv"),
    (lambda p: {"adapt": "tset"}, ConfigError, "`adapt` 'tset' is neither none, test, auto nor an existing folder"),
    (lambda p: {"data": p.tmp / "gone"}, DataError, "{tmp}/gone"),
    (lambda p: {"allow_unknown_speakers": "yes"}, ConfigError, "`allow_unknown_speakers` must be True or False"),
    (lambda p: {"model": p.tmp / "nothing"}, ConfigError, "{tmp}/nothing"),
])
def test_bad_arguments_are_one_typed_line_and_write_nothing(trained: automel.api.TrainRun, api_home: Path,
                                                            tmp_path: Path, hw4_sample: Path, arguments: Any,
                                                            error: type, words: str) -> None:
    class Place:
        model, data, tmp = trained.path, hw4_sample, tmp_path

    given: dict[str, Any] = {"model": trained.path, "data": hw4_sample, "out": tmp_path / "o.csv", "device": "cpu",
                             "home": api_home, **arguments(Place)}
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(error) as caught:
        automel.api.predict(**given)
    message = str(caught.value)
    assert words.format(data=hw4_sample, model=trained.path, tmp=tmp_path) in message and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_model_whose_data_set_is_gone_asks_for_data(trained: automel.api.TrainRun, api_home: Path,
                                                      tmp_path: Path) -> None:
    moved = Path(shutil.copytree(trained.path, tmp_path / "model"))
    config = json.loads((moved / "config.json").read_text())
    config["dataset"]["root"] = str(tmp_path / "gone")
    (moved / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=f"its data set {tmp_path / 'gone'} is gone; pass `data`$"):
        automel.api.predict(moved, out=tmp_path / "o.csv", device="cpu", home=api_home)


def test_the_cli_is_a_layer_over_the_api(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                         hw4_sample: Path) -> None:
    seen: dict[str, Any] = {}

    def fake(*args: Any, **options: Any) -> None:
        seen.update(options, args=args)
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(automel.api, "predict", fake)
    code, _, stderr = run(cli, "predict", tmp_path / "model", "--data", hw4_sample, "--out", tmp_path / "o.csv",
                          "--adapt", "none", "--allow-unknown-speakers")
    assert code == 2 and "error: stopped by the test" in stderr
    assert seen["args"] == (tmp_path / "model", hw4_sample, tmp_path / "o.csv")
    assert seen["adapt"] == "none" and seen["allow_unknown_speakers"] is True
