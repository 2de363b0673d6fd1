"""automel.inference: the embedding layer, the recorded front end, inputs, batching and the output files."""

from __future__ import annotations

import csv
import json
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from automel import inference as inference_module
from automel.data.frontend import FbankParams, compute_fbank, load_audio
from automel.data.layout import DatasetWriter
from automel.ensemble import EnsembleModel
from automel.errors import AudioError, ConfigError, DataError, FrontendError
from automel.heads import MarginHead
from automel.inference import (
    InputItem,
    Prediction,
    SpeakerInference,
    collect_inputs,
    embedding,
    embedding_ids_path,
    featurize_audio,
    frontend_params,
    write_embeddings,
    write_predictions,
)
from automel.model import SpeakerModel, build_model
from automel.model_config import ModelConfig
from automel.model_folder import write_run_dir
from automel.train.fit import full_params

N_MELS = 40
SPEAKERS = ("alice", "bob", "carol")
TINY = {"encoder": "transformer", "encoder.transformer.d_model": 16, "encoder.transformer.nhead": 2,
        "encoder.transformer.dim_feedforward": 32, "pooling": "mean"}
HEADS: dict[str, dict[str, Any]] = {
    "softmax": {"head": "softmax", "head.softmax.hidden": 12},
    "am-softmax": {"head": "am-softmax", "head.am-softmax.embed_dim": 8},
    "aam-softmax-no-projection": {"head": "aam-softmax", "head.aam-softmax.embed_dim": None},
}


def tiny_model(head: str = "am-softmax", seed: int = 0, n_mels: int = N_MELS) -> tuple[SpeakerModel, ModelConfig]:
    """A small random model and the record ``automel train`` would write for it on prepared audio."""
    params = full_params({**TINY, **HEADS[head], "train.normalize": "utterance"})
    torch.manual_seed(seed)
    model = build_model(params, n_mels, len(SPEAKERS)).eval()
    dataset = {"name": "tiny", "kind": "prepared", "features": FbankParams(n_mels=n_mels).to_json()}
    return model, ModelConfig(params, n_mels, SPEAKERS, dataset, {"valid_acc": 0.5}, {})


def make_run(out: Path, head: str = "am-softmax", dataset: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """A run directory of :func:`tiny_model`; ``dataset`` updates the record's (e.g. to drop the front end)."""
    model, record = tiny_model(head, seed)
    record = ModelConfig(record.params, record.n_mels, record.speakers, {**record.dataset, **(dataset or {})},
                       record.result, record.extra)
    return write_run_dir(out, model.state_dict(), record, [], None)


def write_tone(path: Path, seconds: float, rate: int = 16_000, freq: float = 220.0, seed: int = 0) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.3 * np.sin(2 * np.pi * freq * t) + np.random.default_rng(seed).normal(0.0, 0.02, t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave.astype(np.float32), rate)
    return path


def _batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    x = torch.randn(len(lengths), max(lengths), N_MELS, generator=torch.Generator().manual_seed(1)) + 15
    return x, mask


@torch.no_grad()
@pytest.mark.parametrize("head", list(HEADS))
def test_embedding_is_the_heads_embedding_layer_normalised(head: str) -> None:
    model, _ = tiny_model(head)
    x, mask = _batch([20, 13, 5])
    vectors = embedding(model, x, mask)
    pooled = model.embed(x, mask)
    if isinstance(model.head, MarginHead):
        expected = model.head.projection(pooled)
        # the very vector the head's cosine uses: logits (no labels) = s * <embedding, normalised weights>
        logits = model.head.scale * vectors @ F.normalize(model.head.weight, dim=-1).T
        assert torch.allclose(model(x, mask), logits, atol=1e-5)
    else:
        expected = pooled
    assert vectors.dtype == torch.float32 and vectors.shape == expected.shape
    assert vectors.shape[1] == {"softmax": 16, "am-softmax": 8, "aam-softmax-no-projection": 16}[head]
    assert torch.allclose(vectors, F.normalize(expected, dim=-1), atol=1e-6)
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3), atol=1e-6)


def test_an_ensemble_has_no_single_embedding() -> None:
    model, record = tiny_model()
    ensemble = EnsembleModel([model, tiny_model(seed=1)[0]], [0.5, 0.5])
    with pytest.raises(ConfigError, match="no single embedding space"):
        embedding(ensemble, *_batch([4]))
    inference = SpeakerInference(ensemble, record, "ens")
    with pytest.raises(ConfigError, match=r"^ens: the model \(EnsembleModel\) has no single embedding"):
        inference.embed([])
    assert inference.predict_proba([]).shape == (0, 0)  # an ensemble still predicts


def _feature_files(tmp_path: Path, lengths: list[int]) -> list[InputItem]:
    items = []
    for k, length in enumerate(lengths):
        path = tmp_path / f"u{k}.pt"
        torch.save(torch.randn(length, N_MELS, generator=torch.Generator().manual_seed(k)) + 15, path)
        items.append(InputItem(f"u{k}", path))
    return items


@pytest.mark.parametrize("head", ["softmax", "am-softmax"])
def test_batched_results_equal_one_utterance_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       head: str) -> None:
    model, record = tiny_model(head)
    inference = SpeakerInference(model, record)
    items = _feature_files(tmp_path, [30, 7, 120, 7, 55, 1, 64])
    monkeypatch.setattr(inference_module, "MAX_BATCH", 3)  # several batches and chunks, in mixed order
    monkeypatch.setattr(inference_module, "CHUNK", 4)
    vectors = inference.embed(items)
    probs = inference.predict_proba(items)
    with torch.no_grad():
        for k, item in enumerate(items):
            x = torch.from_numpy(inference.features(item)).unsqueeze(0)
            mask = torch.ones(x.shape[:2], dtype=torch.bool)
            np.testing.assert_allclose(vectors[k], embedding(model, x, mask)[0].numpy(), atol=1e-5)
            np.testing.assert_allclose(probs[k], model(x, mask).softmax(-1)[0].numpy(), atol=1e-5)
    assert vectors.shape == (7, 8 if head == "am-softmax" else 16) and probs.shape == (7, 3)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_predict_lists_the_top_k_speakers(tmp_path: Path) -> None:
    model, record = tiny_model("softmax")
    inference = SpeakerInference(model, record)
    items = _feature_files(tmp_path, [40, 50])
    probs = inference.predict_proba(items)
    top2 = inference.predict(items, top_k=2)
    for item, p, row in zip(items, probs, top2, strict=True):
        order = np.argsort(-p)
        assert row.id == item.id and row.speakers == tuple(SPEAKERS[i] for i in order[:2])
        assert row.probabilities == pytest.approx(p[order[:2]].tolist())
        assert row.probabilities[0] >= row.probabilities[1]
    assert [len(r.speakers) for r in inference.predict(items, top_k=10)] == [3, 3]  # capped at the speakers
    with pytest.raises(ConfigError, match="top_k"):
        inference.predict(items, top_k=0)


def test_frontend_comes_from_the_record() -> None:
    _, record = tiny_model()
    assert frontend_params(record) == FbankParams()
    shifted = FbankParams(frame_shift_ms=20.0).to_json()
    record = ModelConfig(record.params, N_MELS, SPEAKERS, {"features": shifted}, {}, {})
    assert frontend_params(record) == FbankParams(frame_shift_ms=20.0)


@pytest.mark.parametrize(("dataset", "match"), [
    ({"kind": "hw4", "features": {}}, "^run: was trained on hw4 features whose audio front end is unknown"),
    ({}, "front end is unknown"),
    ({"features": {**FbankParams().to_json(), "frontend": "librosa"}}, "front end 'librosa'"),
    ({"features": {**FbankParams().to_json(), "preemphasis": 0.97}}, "does not know: preemphasis"),
    ({"features": FbankParams(n_mels=80).to_json()}, "gives 80 mel bins but the model takes 40"),
])
def test_an_unknown_front_end_is_refused(dataset: dict[str, Any], match: str) -> None:
    _, record = tiny_model()
    record = ModelConfig(record.params, N_MELS, SPEAKERS, dataset, {}, {})
    with pytest.raises(FrontendError, match=match):
        frontend_params(record, "run")


def test_audio_goes_through_the_recorded_front_end(tmp_path: Path) -> None:
    model, record = tiny_model()
    wav = write_tone(tmp_path / "a.wav", 1.0, rate=8_000)  # resampled to 16 kHz
    default = SpeakerInference(model, record).features(InputItem("a", wav))
    np.testing.assert_array_equal(default, compute_fbank(load_audio(wav), FbankParams()))
    assert abs(default.shape[0] - 100) <= 2
    shifted = FbankParams(frame_shift_ms=20.0)
    record = ModelConfig(record.params, N_MELS, SPEAKERS, {"features": shifted.to_json()}, {}, {})
    coarse = SpeakerInference(model, record).features(InputItem("a", wav))
    np.testing.assert_array_equal(coarse, compute_fbank(load_audio(wav), shifted))
    assert abs(coarse.shape[0] - 50) <= 2
    hw4 = ModelConfig(record.params, N_MELS, SPEAKERS, {"kind": "hw4", "features": {}}, {}, {})
    with pytest.raises(FrontendError):
        SpeakerInference(model, hw4).features(InputItem("a", wav))
    pt = tmp_path / "a.pt"
    torch.save(torch.from_numpy(default), pt)  # .pt features need no front end
    np.testing.assert_array_equal(SpeakerInference(model, hw4).features(InputItem("a", pt)), default)


def test_unusable_audio_is_a_one_line_error_naming_the_file(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.wav"
    garbage.write_bytes(b"RIFF\x00\x00not really a wave file" * 10)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, dtype=np.float32), 16_000)
    short = write_tone(tmp_path / "short.wav", 0.005)
    for path, match in ((garbage, "cannot decode audio"), (empty, "no audio samples"), (short, "too short")):
        with pytest.raises(AudioError, match=match) as info:
            featurize_audio(path, FbankParams())
        message = str(info.value)
        assert message.startswith(f"{path}: ") and "\n" not in message
        assert isinstance(info.value, DataError)  # exit code 2 in the CLI


def _tiny_dataset(root: Path) -> Path:
    with DatasetWriter(root, N_MELS, {"kind": "prepared"}) as writer:
        for k in range(3):
            writer.add(SPEAKERS[k % 2], f"k{k}", np.full((10 + k, N_MELS), 15.0, dtype=np.float32), test=k == 2)
        return writer.commit()


def test_collect_inputs(tmp_path: Path) -> None:
    a = write_tone(tmp_path / "audio" / "b" / "2.wav", 0.1)
    b = write_tone(tmp_path / "audio" / "a.flac", 0.1)
    (tmp_path / "audio" / "notes.txt").write_text("ignored")
    pt = tmp_path / "f.pt"
    torch.save(torch.zeros(3, N_MELS), pt)
    data = _tiny_dataset(tmp_path / "data")
    items = collect_inputs([pt, tmp_path / "audio", data])
    meta = json.loads((data / "metadata.json").read_text())
    test = json.loads((data / "testdata.json").read_text())["utterances"]
    names = [u["feature_path"] for utts in meta["speakers"].values() for u in utts] + [u["feature_path"] for u in test]
    assert [i.id for i in items] == [str(pt), str(b), str(a), *names]
    assert [i.path for i in items] == [pt, b, a, *(data / n for n in names)]
    assert [i.is_audio for i in items] == [False, True, True, False, False, False]


@pytest.mark.parametrize(("make", "match"), [
    (lambda tmp: [tmp / "nowhere.wav"], "nowhere.wav: not found"),
    (lambda tmp: [tmp / "x.txt"], "x.txt: not an audio file"),
    (lambda tmp: [tmp / "empty"], "empty: no audio files"),
    (lambda tmp: [tmp / "x.wav", tmp / "x.wav"], "x.wav: id .* is also the id of"),
    (lambda tmp: [], "no inputs"),
])
def test_collect_inputs_refuses(tmp_path: Path, make: Any, match: str) -> None:
    (tmp_path / "x.txt").write_text("")
    (tmp_path / "x.wav").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=match):
        collect_inputs(make(tmp_path))


def test_write_embeddings(tmp_path: Path) -> None:
    from safetensors import safe_open

    vectors = np.arange(6, dtype=np.float32).reshape(3, 2)
    ids = ["a b.wav", "ü.flac", "uttr-1.pt"]
    written = write_embeddings(tmp_path / "emb.npy", ids, vectors)
    assert written == [tmp_path / "emb.npy", tmp_path / "emb.ids.txt"] == [tmp_path / "emb.npy",
                                                                            embedding_ids_path(tmp_path / "emb.npy")]
    np.testing.assert_array_equal(np.load(tmp_path / "emb.npy"), vectors)
    assert (tmp_path / "emb.ids.txt").read_text(encoding="utf-8").splitlines() == ids
    write_embeddings(tmp_path / "emb.safetensors", ids, vectors, {"model": "run"})
    with safe_open(str(tmp_path / "emb.safetensors"), framework="numpy") as fh:
        meta = fh.metadata()
        np.testing.assert_array_equal(fh.get_tensor("embeddings"), vectors)
    assert json.loads(meta["ids"]) == ids and meta["model"] == "run" and meta["format"] == "automel-embeddings/1"
    with pytest.raises(ConfigError, match=r"must end in \.npy or \.safetensors"):
        write_embeddings(tmp_path / "emb.csv", ids, vectors)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.ids.txt", "emb.npy", "emb.safetensors"]
    (tmp_path / "new").touch()  # the umask's mode, which safetensors' private files must not keep
    modes = {stat.S_IMODE(p.stat().st_mode) for p in tmp_path.iterdir()}
    assert modes == {stat.S_IMODE((tmp_path / "new").stat().st_mode)}


def test_write_predictions(tmp_path: Path) -> None:
    rows = [Prediction("x.wav", ("bob", "alice"), (0.75, 0.25)), Prediction("y.wav", ("alice", "bob"), (0.5, 0.5))]
    out = write_predictions(tmp_path / "out.csv", rows)
    with out.open(newline="") as fh:
        table = list(csv.reader(fh))
    assert table == [["Id", "Category", "Probability", "Category2", "Probability2"],
                     ["x.wav", "bob", "0.750000", "alice", "0.250000"],
                     ["y.wav", "alice", "0.500000", "bob", "0.500000"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_load_refuses_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="model directory not found"):
        SpeakerInference.load(tmp_path / "nope")
    run = make_run(tmp_path / "run")
    loaded = SpeakerInference.load(run)
    assert loaded.speakers == SPEAKERS and loaded.frontend == FbankParams()
