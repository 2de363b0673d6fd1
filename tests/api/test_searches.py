"""The Python API as a notebook uses it: the README's example runs as written, and every failure is typed."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import automel
import automel.api
from automel.data.layout import read_dataset
from automel.engine.handle import StudyHandle
from automel.errors import ConfigError, DataError, ExportError, Interrupted
from tests.conftest import HW4_SAMPLE, need, run

README = Path(__file__).resolve().parents[2] / "README.md"
# The test's budget for the example's own call: the HW4 sample instead of generating the synthetic corpus
# (a minute on two cores), two short transformer trials, no refit. No adaptation, so that the export's
# output.csv is the model's own predictions (Model.predict uses the weights as trained; see README).
QUICK: dict[str, Any] = {"time_limit": 60, "trials": 2, "steps_per_trial": 20, "encoders": ["transformer"],
                         "poolings": ["mean"], "heads": ["softmax"], "device": "cpu", "quality": "fast",
                         "refit": False, "portfolio": False, "adapt": "none"}


def readme_example() -> str:
    """The first python block of the README's "From Python" section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## From Python"):]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's From Python section has no python block"
    return match.group(1)


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The README example's namespace after it ran, with the test's budget and home folded into its call."""
    home = tmp_path_factory.mktemp("api-home")
    real = automel.api.search
    printed: list[str] = []

    def quick(data: Any = None, **options: Any) -> automel.api.SearchResult:
        assert data is None and "progress" in options  # the example as written: the embedded default, lines
        return real(need(HW4_SAMPLE), **{**options, **QUICK, "home": home})

    def capture(*values: Any) -> None:
        printed.append(" ".join(map(str, values)))

    namespace: dict[str, Any] = {"__name__": "readme_example", "print": capture}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(automel.api, "search", quick)
        exec(compile(readme_example(), str(README), "exec"), namespace)
    namespace["printed"], namespace["home"] = printed, home
    return namespace


def test_the_readme_example_searches_loads_predicts_and_embeds(example: dict[str, Any]) -> None:
    result, model, predictions, embeddings = (example[k] for k in ("result", "model", "predictions", "embeddings"))
    printed = "\n".join(example["printed"])
    assert "search started: study hw4-sample" in printed and "trial 0 COMPLETE" in printed
    assert "export done in" in printed
    assert result.path == example["home"] / "hw4-sample" / "best" and result.kind == "trial"
    assert (result.path / "config.json").is_file() and result.data == HW4_SAMPLE
    # The leaderboard printed as a table, best first.
    board = result.leaderboard()
    assert board[0].valid_acc == pytest.approx(result.study.best_value) and board[0].trial == result.trials[0]
    assert board[0].n_params and board[0].n_params > 1000 and board[0].pareto
    assert re.search(r"^rank\s+trial\s+encoder", printed, re.M) and "transformer" in str(board)
    # Every utterance of the data set, three speakers each, most probable first.
    dataset = read_dataset(HW4_SAMPLE)
    assert [p.id for p in predictions] == [u.feature_path for u in dataset.train + dataset.test]
    for p in predictions:
        assert len(p.speakers) == 3 and set(p.speakers) <= set(model.speakers)
        assert p.probabilities == tuple(sorted(p.probabilities, reverse=True)) and p.speaker == p.speakers[0]
    # The test utterances' predictions are the export's output.csv.
    with (result.path / "output.csv").open() as fh:
        submitted = {row["Id"]: row["Category"] for row in csv.DictReader(fh)}
    assert submitted and {p.id: p.speaker for p in predictions if p.id in submitted} == submitted
    assert embeddings.ids == [p.id for p in predictions]
    assert np.allclose(np.linalg.norm(embeddings.vectors, axis=1), 1.0, atol=1e-4)
    assert f"({len(predictions)}, {embeddings.vectors.shape[1]})" in printed


def test_a_model_takes_arrays_tensors_and_files(example: dict[str, Any]) -> None:
    model = example["model"]
    n_mels = model.inference.record.n_mels
    features = np.random.default_rng(0).standard_normal((150, n_mels)).astype(np.float32)
    one = model.predict(features, top_k=2)
    assert [p.id for p in one] == ["0"] and len(one[0].speakers) == 2
    first_file = example["predictions"][0].id
    mixed = model.predict([torch.from_numpy(features), HW4_SAMPLE / first_file])
    assert [p.id for p in mixed] == ["0", str(HW4_SAMPLE / first_file)]
    assert mixed[0].speaker == one[0].speaker and mixed[1].speaker == example["predictions"][0].speaker
    proba = model.predict_proba([features, features[:80]])
    assert proba.shape == (2, len(model.speakers)) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert model.config["encoder"] == "transformer" and "transformer" in repr(model)


@pytest.mark.parametrize(("make", "words"), [
    (lambda n_mels: np.zeros((50, 7), dtype=np.float32), "input '0': shape (50, 7), expected (T>0, "),
    (lambda n_mels: [np.full((50, n_mels), np.nan, dtype=np.float32)], "input '0': contains NaN or inf values"),
    (lambda n_mels: np.zeros((50, n_mels), dtype=np.int64), "input '0': tensor has dtype torch.int64"),
    (lambda n_mels: [], "no inputs"),
    (lambda n_mels: "no/such/clip.wav", "no/such/clip.wav: not found"),
])
def test_bad_inputs_are_one_typed_error(example: dict[str, Any], make: Any, words: str) -> None:
    model = example["model"]
    with pytest.raises(DataError) as caught:
        model.predict(make(model.inference.record.n_mels))
    assert str(caught.value).startswith(words) and "\n" not in str(caught.value)


def test_top_k_below_one_is_refused(example: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="`top_k` must be a whole number of at least 1"):
        example["model"].predict(HW4_SAMPLE, top_k=0)


def test_embeddings_save_like_automel_embed(example: dict[str, Any], tmp_path: Path) -> None:
    embeddings = example["embeddings"]
    written = embeddings.save(tmp_path / "emb.npy")
    assert written == [tmp_path / "emb.npy", tmp_path / "emb.ids.txt"]
    assert np.array_equal(np.load(tmp_path / "emb.npy"), embeddings.vectors)
    assert (tmp_path / "emb.ids.txt").read_text().split() == embeddings.ids
    assert np.asarray(embeddings).shape == embeddings.vectors.shape and len(embeddings) == len(embeddings.ids)
    with pytest.raises(ConfigError, match=r"emb\.txt"):
        embeddings.save(tmp_path / "emb.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.ids.txt", "emb.npy"]


def test_leaderboard_of_an_existing_study(example: dict[str, Any]) -> None:
    board = automel.leaderboard("hw4-sample", home=example["home"])
    assert [r.trial for r in board] == [r.trial for r in example["result"].leaderboard()]
    assert board.to_dicts()[0]["trial"] == board[0].trial and board.to_dicts()[0]["config"]["encoder"] == "transformer"
    assert board._repr_html_().startswith("<table>") and "<td>transformer</td>" in board._repr_html_()
    assert example["result"].pareto_front()[0].pareto
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install pandas"):
            board.to_dataframe()
    else:
        assert list(board.to_dataframe()["trial"]) == [r.trial for r in board]


def test_load_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"{tmp_path / 'nothing'}: model directory not found"):
        automel.load(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="empty"):
        automel.load(tmp_path / "empty")


@pytest.mark.parametrize(("options", "error", "words"), [
    ({"time_limit": "soon"}, ConfigError, "`time_limit` 'soon' is not a duration"),
    ({"time_limit": float("nan")}, ConfigError, "`time_limit` 'nan' is not a duration"),
    ({"trials": 0}, ConfigError, "`trials` must be a whole number of at least 1, got 0"),
    ({"steps_per_trial": 5}, ConfigError, "`steps_per_trial` must be a whole number of at least 10, got 5"),
    ({"workers": 1.5}, ConfigError, "`workers` must be a whole number of at least 1, got 1.5"),
    ({"time_limit": 5}, ConfigError, "`time_limit` 5s is shorter than the shortest useful run"),
    ({"formats": ["gif"]}, ExportError, "gif"),
    ({"max_params": 0}, ConfigError, "`max_params` must be a whole number of at least 1, got 0"),
    ({"max_latency_ms": -1.0}, ConfigError, "`max_latency_ms` must be a finite positive number, got -1.0"),
    ({"sampler": "nope"}, ConfigError, "nope"),
    ({"quality": "perfect"}, ConfigError, "`quality` 'perfect' is unknown"),
])
def test_bad_options_fail_before_anything_is_written(tmp_path: Path, hw4_sample: Path, options: dict[str, Any],
                                                      error: type, words: str) -> None:
    home = tmp_path / "home"
    with pytest.raises(error, match=re.escape(words)):
        automel.search(hw4_sample, home=home, **{**QUICK, **options})
    assert not home.exists() or not any(home.glob("*.db"))


def test_ctrl_c_is_a_typed_error_and_the_same_call_resumes(tmp_path: Path, hw4_sample: Path) -> None:
    def interrupt_after_first_trial(line: str) -> None:
        if line.startswith("trial 0 "):
            raise KeyboardInterrupt

    with pytest.raises(Interrupted, match="rerun the same command to resume"):
        automel.search(hw4_sample, home=tmp_path, progress=interrupt_after_first_trial, **{**QUICK, "trials": 3})
    study = StudyHandle.find(tmp_path, "hw4-sample").load()
    assert [t.state.name for t in study.trials][:1] == ["COMPLETE"] and not (tmp_path / "hw4-sample" / "best").exists()
    lines: list[str] = []
    result = automel.search(hw4_sample, home=tmp_path, progress=lines.append, **{**QUICK, "trials": 3})
    assert result.path.is_dir() and len(result.study.trials) >= 3
    assert not any(line.startswith("trial 0 ") for line in lines)  # resumed: trial 0 is not run again


def test_the_cli_is_a_layer_over_the_api(cli: CliRunner, monkeypatch: pytest.MonkeyPatch, hw4_sample: Path) -> None:
    seen: dict[str, Any] = {}

    def fake(data: Any = None, **options: Any) -> None:
        seen.update(options, data=data)
        raise ConfigError("stopped by the test")

    monkeypatch.setattr(automel.api, "search", fake)
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--time-limit", "2m", "--max-params", 5000,
                          "--encoders", "tdnn,transformer")
    assert code == 2 and "error: stopped by the test" in stderr
    assert seen["data"] == hw4_sample and seen["time_limit"] == 120.0 and seen["max_params"] == 5000
    assert seen["encoders"] == ["tdnn", "transformer"] and seen["hooks"] is not None
