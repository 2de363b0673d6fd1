"""``automel embed``, ``verify`` and ``predict`` on audio files as a user drives them, on real speech.

One small model is trained once for the module (``data prepare`` + ``train``, about half a minute on one
core): six LibriSpeech test-other speakers and the six FSDD speakers. Verification trials come from
utterances held out of training: LibriSpeech ones cut into 2.5 s chunks (the six training speakers, and
the four others, unseen), and FSDD digits. The untrained baseline is that model at step 0: the same
architecture, seed and normalisation statistics, before any training step.
"""

from __future__ import annotations

import csv
import itertools
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from automel.data.frontend import FbankParams, load_audio
from automel.model import build_model
from automel.model_folder import load_run, write_run_dir
from automel.verification import equal_error_rate, min_dcf
from tests.conftest import FSDD, LIBRISPEECH, need, run
from tests.test_inference import make_run, write_tone

SEEN_SPEAKERS = 6  # LibriSpeech speakers in training (the first six by name); the other four stay unseen
HELD_OUT = 2  # LibriSpeech utterances per speaker kept out of training
FSDD_TRAIN, FSDD_HELD_OUT = 20, 8  # FSDD recordings per speaker in training and held out
CHUNK_SECONDS = 2.5
STEPS = 100
CONFIG = {"encoder": "transformer", "encoder.transformer.d_model": 64, "encoder.transformer.nhead": 2,
          "encoder.transformer.dim_feedforward": 128, "encoder.transformer.num_layers": 1, "pooling": "mean",
          "head": "am-softmax", "head.am-softmax.embed_dim": 64,
          "train.batch_size": 16, "train.segment_len": 96, "train.lr": 2e-3}
EER_LINE = re.compile(r"EER (?P<eer>[\d.]+)% \(threshold (?P<threshold>-?[\d.]+)\), "
                      r"minDCF\(p_target=0.01\) (?P<dcf>[\d.]+) on (?P<n>\d+) trials")


@dataclass(frozen=True)
class Speech:
    root: Path
    data: Path  # the prepared training set
    trained: Path
    untrained: Path
    trials: Path  # labelled trial list, paths relative to it (chunks) or absolute (FSDD)
    held_out: dict[str, list[Path]]  # LibriSpeech flacs of the training speakers, kept out of training


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    libri, fsdd = need(LIBRISPEECH), need(FSDD)
    root = tmp_path_factory.mktemp("speech")
    cli = CliRunner()
    speakers = sorted(p.name for p in libri.iterdir() if p.is_dir())
    rows, held_out, unseen = ["path,speaker,split"], {}, {}
    for speaker in speakers:
        files = sorted((libri / speaker).rglob("*.flac"))
        if speaker in speakers[:SEEN_SPEAKERS]:
            rows += [f"{f},{speaker},train" for f in files[:-HELD_OUT]]
            held_out[speaker] = files[-HELD_OUT:]
        else:
            unseen[speaker] = files[-HELD_OUT:]
    rng = random.Random(0)
    digits: dict[str, list[Path]] = {}
    for wav in sorted(fsdd.glob("*.wav")):
        digits.setdefault(wav.stem.split("_")[1], []).append(wav)
    fsdd_held_out: dict[str, list[Path]] = {}
    for speaker, files in sorted(digits.items()):
        chosen = rng.sample(files, FSDD_TRAIN + FSDD_HELD_OUT)
        rows += [f"{f},{speaker},train" for f in chosen[:FSDD_TRAIN]]
        fsdd_held_out[speaker] = chosen[FSDD_TRAIN:]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    code, _, stderr = run(cli, "data", "prepare", "--manifest", root / "manifest.csv", root / "data")
    assert code == 0, stderr
    (root / "config.json").write_text(json.dumps(CONFIG))
    code, _, stderr = run(cli, "train", "--config", root / "config.json", "--data", root / "data", "--steps", STEPS,
                          "--valid-every", STEPS // 2, "--out", root / "trained", "--device", "cpu", "--seed", 0,
                          "--home", root / "home")
    assert code == 0, stderr
    model, record = load_run(root / "trained")
    torch.manual_seed(0)  # what `train --seed 0` seeds before building: the trained model at step 0
    untrained = build_model(record.params, record.n_mels, len(record.speakers))
    untrained.norm.load_state_dict(model.norm.state_dict())  # the training set's statistics, set before step 1
    write_run_dir(root / "untrained", untrained.state_dict(), record, [], None)
    trials = root / "trials" / "trials.txt"
    groups = [_chunks(held_out, trials.parent / "seen"), _chunks(unseen, trials.parent / "unseen"),
              [(f, s) for s, files in fsdd_held_out.items() for f in files]]
    lines = []
    for group in groups:  # every pair within a corpus
        for (a, sa), (b, sb) in itertools.combinations(group, 2):
            lines.append(f"{int(sa == sb)} {_relative(a, trials.parent)} {_relative(b, trials.parent)}")
    trials.write_text("\n".join(lines) + "\n")
    return Speech(root, root / "data", root / "trained", root / "untrained", trials, held_out)


def _chunks(files: dict[str, list[Path]], out: Path) -> list[tuple[Path, str]]:
    """Cut each file into CHUNK_SECONDS pieces, written as 16 kHz WAV under ``out``."""
    out.mkdir(parents=True)
    size = int(CHUNK_SECONDS * 16_000)
    chunks = []
    for speaker, paths in files.items():
        for path in paths:
            wave = load_audio(path)
            for k in range(len(wave) // size):
                chunk = out / f"{path.stem}-{k}.wav"
                sf.write(str(chunk), wave[k * size:(k + 1) * size], 16_000)
                chunks.append((chunk, speaker))
    return chunks


def _relative(path: Path, folder: Path) -> str:
    return path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)


def _verify(cli: CliRunner, model: Path, trials: Path, scores: Path) -> tuple[float, float, np.ndarray, np.ndarray]:
    code, stdout, stderr = run(cli, "verify", model, trials, "--scores", scores, "--device", "cpu")
    assert code == 0, stderr
    match = EER_LINE.search(stdout)
    assert match, stdout
    rows = [line.split() for line in scores.read_text().splitlines()]
    assert [r[:3] for r in rows] == [line.split() for line in trials.read_text().splitlines()]
    labels = np.array([int(r[0]) for r in rows])
    values = np.array([float(r[3]) for r in rows])
    eer, dcf = equal_error_rate(values, labels)[0], min_dcf(values, labels)[0]
    assert float(match["eer"]) == pytest.approx(100 * eer, abs=0.006)  # printed as a percentage, 2 decimals
    assert float(match["dcf"]) == pytest.approx(dcf, abs=6e-5) and int(match["n"]) == len(rows)
    return eer, dcf, values, labels


def test_training_on_prepared_audio_records_the_front_end(speech: Speech) -> None:
    config = json.loads((speech.trained / "config.json").read_text())
    assert config["dataset"]["kind"] == "prepared"
    assert config["dataset"]["features"] == FbankParams().to_json()
    assert config["params"]["train.normalize"] == "global"  # the statistics travel in the weights (norm.*)


def test_verify_trained_model_beats_untrained(speech: Speech, cli: CliRunner, tmp_path: Path) -> None:
    trained = _verify(cli, speech.trained, speech.trials, tmp_path / "trained.txt")
    untrained = _verify(cli, speech.untrained, speech.trials, tmp_path / "untrained.txt")
    labels = trained[3]
    print(f"\n{len(labels)} trials ({labels.sum()} same-speaker): trained EER {trained[0]:.2%} minDCF "
          f"{trained[1]:.3f}; untrained EER {untrained[0]:.2%} minDCF {untrained[1]:.3f}")
    assert labels.sum() >= 300 and (1 - labels).sum() >= 1000  # enough pairs of each kind for stable rates
    assert trained[0] < 0.25, "a trained model's EER must be well below 50 %"
    assert trained[0] < untrained[0] - 0.05
    assert trained[1] < untrained[1]


def test_embeddings_of_audio_and_of_its_prepared_features_agree(speech: Speech, cli: CliRunner,
                                                                tmp_path: Path) -> None:
    code, stdout, stderr = run(cli, "embed", speech.trained, speech.data, "--out", tmp_path / "set.npy",
                               "--device", "cpu")
    assert code == 0, stderr
    assert "embeddings of dimension 64" in stdout
    ids = (tmp_path / "set.ids.txt").read_text().splitlines()
    vectors = np.load(tmp_path / "set.npy")
    assert vectors.shape == (len(ids), 64) and all(i.startswith("uttr-") and i.endswith(".pt") for i in ids)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # the same utterances as audio: data prepare named each uttr-md5(speaker/path in the manifest)
    import hashlib

    flacs = sorted(p for p in (LIBRISPEECH / "1688").rglob("*.flac"))[:3]
    code, _, stderr = run(cli, "embed", speech.trained, *flacs, "--out", tmp_path / "audio.safetensors",
                          "--device", "cpu")
    assert code == 0, stderr
    from safetensors import safe_open

    with safe_open(str(tmp_path / "audio.safetensors"), framework="numpy") as fh:
        audio_ids = json.loads(fh.metadata()["ids"])
        audio = fh.get_tensor("embeddings")
    assert audio_ids == [str(f) for f in flacs]
    for flac, vector in zip(flacs, audio, strict=True):
        name = f"uttr-{hashlib.md5(f'1688/{flac}'.encode()).hexdigest()}.pt"
        np.testing.assert_allclose(vector, vectors[ids.index(name)], atol=1e-4)


def test_predict_audio_recognises_held_out_utterances_of_training_speakers(speech: Speech, cli: CliRunner,
                                                                           tmp_path: Path) -> None:
    files = [f for fs in speech.held_out.values() for f in fs]
    out = tmp_path / "predictions.csv"
    code, stdout, stderr = run(cli, "predict", speech.trained, *files, "--out", out, "--top-k", 3,
                               "--device", "cpu")
    assert code == 0, stderr
    assert f"({len(files)} predictions, top 3)" in stdout
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["Id", "Category", "Probability", "Category2", "Probability2", "Category3", "Probability3"]
    truth = {str(f): speaker for speaker, fs in speech.held_out.items() for f in fs}
    correct = [row["Id"] for row in rows if row["Category"] == truth[row["Id"]]]
    print(f"\npredict (audio): {len(correct)}/{len(rows)} held-out LibriSpeech utterances top-1 correct")
    assert [row["Id"] for row in rows] == [str(f) for f in files]
    assert len(correct) >= len(rows) - 1  # a 7.7 s utterance of a training speaker, on 12 speakers
    for row in rows:
        probs = [float(row[k]) for k in ("Probability", "Probability2", "Probability3")]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-5


def test_verify_without_labels_writes_scores_only(speech: Speech, cli: CliRunner, tmp_path: Path) -> None:
    lines = speech.trials.read_text().splitlines()[:5]
    unlabelled = speech.trials.with_name("unlabelled.txt")
    unlabelled.write_text("".join(" ".join(line.split()[1:]) + "\n" for line in lines))
    code, stdout, stderr = run(cli, "verify", speech.trained, unlabelled, "--device", "cpu")
    assert code == 0, stderr
    printed = [line.split() for line in stdout.splitlines()]
    assert [p[:2] for p in printed] == [line.split()[1:] for line in lines] and "EER" not in stdout
    scores = tmp_path / "scores.txt"
    code, stdout, stderr = run(cli, "verify", speech.trained, unlabelled, "--scores", scores, "--device", "cpu")
    assert code == 0, stderr
    assert "EER" not in stdout and f"wrote 5 scores → {scores}" in stdout
    assert [line.split() for line in scores.read_text().splitlines()] == printed


# ---- bad input: one line naming the file, exit 2, no output -------------------------------------------------


def _fail(cli: CliRunner, *args: object) -> str:
    code, stdout, stderr = run(cli, *args)
    assert code == 2, stdout + stderr
    message = stderr.strip()
    assert message.startswith("error: ") and "\n" not in message, stderr
    assert "Traceback" not in stdout + stderr
    return message


def _outputs(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("out", ".out")))


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A tiny random model on the default front end, a good WAV and a file that is not audio."""
    model = make_run(tmp_path / "model")
    good = write_tone(tmp_path / "good.wav", 0.5)
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"fLaC" + bytes(200))
    return model, good, bad


def test_undecodable_audio(cli: CliRunner, tmp_path: Path, small: tuple[Path, Path, Path]) -> None:
    model, good, bad = small
    for args in (["embed", model, good, bad, "--out", tmp_path / "out.npy"],
                 ["predict", model, good, bad, "--out", tmp_path / "out.csv"]):
        message = _fail(cli, *args, "--device", "cpu")
        assert f"{bad}: cannot decode audio" in message
    trials = tmp_path / "trials.txt"
    trials.write_text(f"1 good.wav bad.flac\n0 good.wav {good}\n")
    assert f"{bad}: cannot decode audio" in _fail(cli, "verify", model, trials, "--scores", tmp_path / "out.txt")
    assert _outputs(tmp_path) == []


def test_trial_list_naming_a_missing_file(cli: CliRunner, tmp_path: Path, small: tuple[Path, Path, Path]) -> None:
    model, _, _ = small
    trials = tmp_path / "trials.txt"
    trials.write_text("1 good.wav good.wav\n0 good.wav gone/missing.wav\n")
    message = _fail(cli, "verify", model, trials, "--scores", tmp_path / "out.txt")
    assert f"{tmp_path / 'gone' / 'missing.wav'}: not found ({trials}: line 2)" in message
    trials.write_text("1 good.wav good.wav\n1 good.wav good.wav\n")
    message = _fail(cli, "verify", model, trials, "--scores", tmp_path / "out.txt")
    assert f"{trials}: has no different-speaker (0) trials" in message
    assert _outputs(tmp_path) == []


def _drop_weights(model: Path) -> str:
    (model / "model.safetensors").unlink()
    return f"{model / 'model.safetensors'}: cannot read weights"


def _truncate_weights(model: Path) -> str:
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    return f"{weights}: cannot read weights"


def _drop_config(model: Path) -> str:
    (model / "config.json").unlink()
    return f"{model}: no config.json"


def _corrupt_config(model: Path) -> str:
    (model / "config.json").write_text('{"format": "automel-run/1", "params": ')
    return f"{model / 'config.json'}: not valid JSON"


def _other_weights(model: Path) -> str:
    make_run(model.with_name("other"), head="softmax")
    (model / "model.safetensors").write_bytes((model.with_name("other") / "model.safetensors").read_bytes())
    return f"{model / 'model.safetensors'}: weights do not fit config.json"


def _no_model(model: Path) -> str:
    return f"{model.with_name('nowhere')}: model directory not found"


@pytest.mark.parametrize("breaks", [_drop_weights, _truncate_weights, _drop_config, _corrupt_config, _other_weights,
                                    _no_model])
def test_broken_model_directory(cli: CliRunner, tmp_path: Path, small: tuple[Path, Path, Path], breaks: object) -> None:
    model, good, _ = small
    expected = breaks(model)  # type: ignore[operator]
    if breaks is _no_model:
        model = model.with_name("nowhere")
    trials = tmp_path / "trials.txt"
    trials.write_text("1 good.wav good.wav\n0 good.wav good.wav\n")
    for args in (["embed", model, good, "--out", tmp_path / "out.npy"],
                 ["predict", model, good, "--out", tmp_path / "out.csv"],
                 ["verify", model, trials, "--scores", tmp_path / "out.txt"]):
        assert expected in _fail(cli, *args, "--device", "cpu")
    assert _outputs(tmp_path) == []


def test_model_trained_on_hw4_features_refuses_audio(cli: CliRunner, tmp_path: Path,
                                                     small: tuple[Path, Path, Path]) -> None:
    _, good, _ = small
    hw4 = make_run(tmp_path / "hw4-model", dataset={"kind": "hw4", "features": {}})  # as train writes for HW4 data
    message = _fail(cli, "predict", hw4, good, "--out", tmp_path / "out.csv", "--device", "cpu")
    assert message.startswith(f"error: {hw4}: was trained on hw4 features whose audio front end is unknown")
    assert _outputs(tmp_path) == []
    # its own kind of input still works: .pt features
    pt = tmp_path / "u.pt"
    torch.save(torch.randn(50, 40) + 15, pt)
    code, _, stderr = run(cli, "predict", hw4, pt, "--out", tmp_path / "out.csv", "--device", "cpu")
    assert code == 0, stderr


def test_embed_refuses_an_unknown_format_and_an_ensemble(cli: CliRunner, tmp_path: Path,
                                                         small: tuple[Path, Path, Path]) -> None:
    from automel.model_folder import read_config, write_ensemble_dir

    model, good, _ = small
    assert "must end in .npy or .safetensors" in _fail(cli, "embed", model, good, "--out", tmp_path / "out.csv")
    _, record = load_run(model)
    state = load_run(model)[0].state_dict()
    ensemble = write_ensemble_dir(tmp_path / "ens", [(state, record, {}), (state, read_config(model), {})], [0.5, 0.5])
    assert "no single embedding space" in _fail(cli, "embed", ensemble, good, "--out", tmp_path / "out.npy")
    assert _outputs(tmp_path) == []
    code, _, stderr = run(cli, "predict", ensemble, good, "--out", tmp_path / "out.csv", "--top-k", 2)
    assert code == 0, stderr  # an ensemble predicts from audio with its members' front end


def test_predict_takes_audio_or_a_data_set_not_both(cli: CliRunner, tmp_path: Path) -> None:
    code, _, stderr = run(cli, "predict", tmp_path, tmp_path / "clip.wav", "--data", tmp_path,
                          "--out", tmp_path / "out.csv")
    assert code == 2 and "not both" in stderr and not (tmp_path / "out.csv").exists()
