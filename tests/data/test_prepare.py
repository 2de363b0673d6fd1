"""``automel data prepare``: real audio (folder per speaker, flat + regex, manifest) into the HW4 layout."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from automel.data import prepare as prepare_module
from automel.data.frontend import compute_fbank
from automel.data.layout import DatasetWriter, Hw4Dataset, read_answers, read_dataset
from automel.data.prepare import PrepareReport, prepare_dataset
from tests.conftest import FSDD, LIBRISPEECH, need, run

FEATURE_NAME = re.compile(r"^uttr-[0-9a-f]{32}\.pt$")
FSDD_REGEX = r"^\d+_([a-z]+)_\d+\.wav$"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep rich from folding long tmp paths in the skipped-files table, so tests can find them."""
    from automel.cli import _common

    monkeypatch.setattr(_common.console, "_width", 1000)


def feature_name(speaker: str, key: str) -> str:
    """The file name DatasetWriter gives an utterance: ``uttr-<md5(speaker/key)>.pt``."""
    return f"uttr-{hashlib.md5(f'{speaker}/{key}'.encode()).hexdigest()}.pt"


def write_tone(path: Path, seconds: float = 1.0, rate: int = 16_000, channels: int = 1, freq: float = 220.0,
               seed: int = 0) -> np.ndarray:
    """A sine plus noise (so every mel bin has energy), written with soundfile; returns the samples."""
    t = np.arange(int(seconds * rate)) / rate
    noise = np.random.default_rng(seed).normal(0.0, 0.02, (t.size, channels))
    sine = 0.3 * np.sin(2 * np.pi * freq * t)[:, None] * np.arange(1, channels + 1)  # channels differ
    wave = (sine + noise).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave if channels > 1 else wave[:, 0], rate)
    return wave


def tone_folder(root: Path, speakers: int = 3, per_speaker: int = 4) -> Path:
    """A folder per speaker of short generated tones."""
    for s in range(speakers):
        for u in range(per_speaker):
            freq = 150 + 60 * s + 7 * u
            write_tone(root / f"spk{s}" / f"u{u}.wav", seconds=0.5, freq=freq, seed=10 * s + u)
    return root


def assert_valid(cli: CliRunner, out: Path) -> Hw4Dataset:
    """``out`` is complete: JSON, tensors, mapping and answers agree, and ``data check`` passes."""
    ds = read_dataset(out)
    assert ds.kind == "prepared" and ds.n_mels == 40 and ds.info["name"] == out.name
    mapping = json.loads((out / "mapping.json").read_text())
    assert mapping["id2speaker"] == {str(i): s for i, s in enumerate(ds.speakers)}
    assert mapping["speaker2id"] == {s: i for i, s in enumerate(ds.speakers)}
    assert {u.speaker for u in ds.train} == set(ds.speakers)  # every speaker keeps training data
    for utt in ds.train + ds.test:
        assert FEATURE_NAME.match(utt.feature_path), utt.feature_path
        tensor = torch.load(out / utt.feature_path, weights_only=True)
        assert tensor.dtype == torch.float32 and tuple(tensor.shape) == (utt.mel_len, 40)
        assert torch.isfinite(tensor).all()
    answers = read_answers(out / "answers.csv")
    assert sorted(answers) == sorted(u.feature_path for u in ds.test)
    assert set(answers.values()) <= set(ds.speakers)
    assert not list(out.parent.glob(f".{out.name}.*")), "temporary folder left behind"
    if importlib.util.find_spec("automel.data.check") is not None:
        code, stdout, stderr = run(cli, "data", "check", out)
        assert code == 0, stdout + stderr
    return ds


def test_librispeech_folder_per_speaker(tmp_path: Path, cli: CliRunner) -> None:
    src = need(LIBRISPEECH)
    out = tmp_path / "libri"
    code, stdout, stderr = run(cli, "data", "prepare", src, out, "--jobs", "2")
    assert code == 0, stderr
    assert "10 speakers, 80 training and 20 test" in stdout
    ds = assert_valid(cli, out)
    speakers = sorted(p.name for p in src.iterdir() if p.is_dir())
    assert list(ds.speakers) == speakers and len(speakers) == 10
    assert (len(ds.train), len(ds.test)) == (80, 20)
    answers = read_answers(out / "answers.csv")
    names = {u.feature_path for u in ds.train} | set(answers)
    for flac in src.rglob("*.flac"):  # every file is there, under its true speaker
        speaker, key = flac.relative_to(src).parts[0], flac.relative_to(src).as_posix()
        assert feature_name(speaker, key) in names
        if feature_name(speaker, key) in answers:
            assert answers[feature_name(speaker, key)] == speaker
    assert sorted(answers.values()) == sorted(speakers * 2)
    for utt in ds.train + ds.test:  # HW4's range: int16-scale log-mel, mean near 15
        assert 5 < float(torch.load(out / utt.feature_path, weights_only=True).mean()) < 25
        assert utt.mel_len > 100


def test_fsdd_flat_folder_with_speaker_regex(tmp_path: Path, cli: CliRunner) -> None:
    fsdd = need(FSDD)
    src = tmp_path / "fsdd"
    src.mkdir()
    for wav in sorted(fsdd.glob("*.wav")):
        if int(wav.stem.split("_")[2]) < 2:  # digits 0-9 × indices 0-1 = 20 files per speaker
            shutil.copy(wav, src / wav.name)
    out = tmp_path / "digits"
    code, _, stderr = run(cli, "data", "prepare", src, out, "--speaker-regex", FSDD_REGEX)
    assert code == 0, stderr
    ds = assert_valid(cli, out)
    assert list(ds.speakers) == ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]
    assert (len(ds.train), len(ds.test)) == (108, 12)
    lengths = {u.feature_path: u.mel_len for u in ds.train + ds.test}
    for wav in sorted(src.glob("*.wav"))[:10]:  # 8 kHz in, 16 kHz fbank out: ~100 frames per second
        info = sf.info(str(wav))
        assert info.samplerate == 8000
        mel_len = lengths[feature_name(wav.stem.split("_")[1], wav.name)]
        assert abs(mel_len - info.duration * 100) <= 3, (wav.name, mel_len, info.duration)


def test_manifest_with_split_stereo_and_ogg(tmp_path: Path, cli: CliRunner) -> None:
    audio = tmp_path / "audio"
    write_tone(audio / "a1.wav", freq=200)
    write_tone(audio / "a2.flac", freq=210, seed=1)
    stereo = write_tone(audio / "sub" / "a3 stereo.wav", rate=44_100, channels=2, freq=190, seed=2)
    write_tone(audio / "a4.ogg", rate=22_050, freq=205, seed=3)
    write_tone(audio / "b1.wav", freq=400, seed=4)
    write_tone(audio / "b2.ogg", freq=410, seed=5)
    write_tone(audio / "b3.wav", freq=420, seed=6)
    manifest = tmp_path / "lists" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        "path,speaker,split\n"
        "../audio/a1.wav,alice,train\n"
        "../audio/a2.flac,alice,TRAIN\n"
        '"../audio/sub/a3 stereo.wav",alice,train\n'
        "../audio/a4.ogg,alice,test\n"
        f"{audio / 'b1.wav'},bob,train\n"
        "\n"
        "../audio/b2.ogg,bob,train\n"
        "../audio/b3.wav,bob,test\n"
    )
    out = tmp_path / "out"
    code, _, stderr = run(cli, "data", "prepare", "--manifest", manifest, out, "--test-per-speaker", "1")
    assert code == 0, stderr
    ds = assert_valid(cli, out)
    assert list(ds.speakers) == ["alice", "bob"] and (len(ds.train), len(ds.test)) == (5, 2)
    assert read_answers(out / "answers.csv") == {  # the split column decides the test set
        feature_name("alice", "../audio/a4.ogg"): "alice", feature_name("bob", "../audio/b3.wav"): "bob",
    }
    # the stereo 44.1 kHz file was averaged to mono and resampled to 16 kHz before the fbank
    import soxr

    expected = compute_fbank(soxr.resample(stereo.mean(axis=1), 44_100, 16_000))
    tensor = torch.load(out / feature_name("alice", "../audio/sub/a3 stereo.wav"), weights_only=True)
    assert 95 <= tensor.shape[0] <= 100
    np.testing.assert_allclose(tensor.numpy(), expected, rtol=1e-4, atol=1e-3)
    assert json.loads((out / "metadata.json").read_text())["automel"]["source"] == str(manifest)


def test_manifest_without_split_uses_test_per_speaker(tmp_path: Path) -> None:
    src = tone_folder(tmp_path / "src", speakers=2, per_speaker=4)
    manifest = tmp_path / "list.csv"
    manifest.write_text("".join(f"src/{p.relative_to(src).as_posix()},{p.parent.name}\n"
                                for p in sorted(src.rglob("*.wav"))))
    progress: list[tuple[int, int]] = []
    report = prepare_dataset(None, tmp_path / "out", manifest=manifest, test_per_speaker=1,
                             on_progress=lambda done, total: progress.append((done, total)))
    assert report == PrepareReport(out=(tmp_path / "out").resolve(), speakers=2, train_utterances=6,
                                   test_utterances=2, skipped=[])
    assert progress[-1] == (8, 8) and [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_bad_files_are_skipped_and_listed(tmp_path: Path, cli: CliRunner) -> None:
    src = tone_folder(tmp_path / "src", speakers=3, per_speaker=3)
    (src / "spk0" / "u2.wav").unlink()  # spk0: 2 good files + 4 bad ones
    (src / "spk0" / "corrupt.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    (src / "spk0" / "empty.flac").write_bytes(b"")
    sf.write(str(src / "spk0" / "silent0.wav"), np.zeros(0, dtype=np.float32), 16_000)
    write_tone(src / "spk0" / "short.WAV", seconds=100 / 16_000)
    (src / "ghost").mkdir()
    (src / "ghost" / "broken.ogg").write_bytes(b"OggS not really")
    (src / "notes.txt").write_text("not audio, ignored")
    write_tone(src / "loose.wav", seconds=0.5)  # no speaker folder
    out = tmp_path / "out"
    code, stdout, stderr = run(cli, "data", "prepare", src, out)
    assert code == 0, stderr
    assert "Skipped 7 file(s)" in stdout and "not in a speaker folder" in stdout
    for name in ("corrupt.wav", "empty.flac", "silent0.wav", "short.WAV", "broken.ogg", "ghost", "loose.wav"):
        assert name in stdout
    assert "too short" in stdout and "unreadable" in stdout and "speaker 'ghost' dropped" in stdout
    assert "notes.txt" not in stdout
    ds = assert_valid(cli, out)
    assert list(ds.speakers) == ["spk0", "spk1", "spk2"]
    per_speaker = {s: sum(u.speaker == s for u in ds.train) for s in ds.speakers}
    assert per_speaker == {"spk0": 1, "spk1": 1, "spk2": 1}  # held-out keys chosen among usable files only
    assert len(ds.test) == 1 + 2 + 2


def _missing_src(tmp_path: Path) -> list[object]:
    return [tmp_path / "no-such-audio", tmp_path / "out"]


def _bad_regex(tmp_path: Path) -> list[object]:
    return [tone_folder(tmp_path / "src", 2, 2), tmp_path / "out", "--speaker-regex", r"(\d+_"]


def _unknown_split(tmp_path: Path) -> list[object]:
    src = tone_folder(tmp_path / "src", 2, 2)
    manifest = tmp_path / "bad-manifest.csv"
    manifest.write_text(f"path,speaker,split\n{src}/spk0/u0.wav,spk0,train\n{src}/spk0/u1.wav,spk0,dev\n")
    return ["--manifest", manifest, tmp_path / "out"]


def _missing_listed_file(tmp_path: Path) -> list[object]:
    manifest = tmp_path / "bad-manifest.csv"
    manifest.write_text("path,speaker\nnowhere.wav,spk0\n")
    return ["--manifest", manifest, tmp_path / "out"]


@pytest.mark.parametrize(("make_args", "expected"), [
    (_missing_src, ["no-such-audio"]),
    (_bad_regex, ["(\\d+_", "regex"]),  # no [...]: rich would read it as markup
    (_unknown_split, ["bad-manifest.csv", "line 3", "dev"]),
    (_missing_listed_file, ["bad-manifest.csv", "line 2", "nowhere.wav"]),
])
def test_errors_exit_2_with_one_line_and_write_nothing(tmp_path: Path, cli: CliRunner, make_args: object,
                                                       expected: list[str]) -> None:
    assert callable(make_args)
    code, stdout, stderr = run(cli, "data", "prepare", *make_args(tmp_path))
    assert code == 2, stdout + stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    for text in expected:
        assert text in stderr
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*"))


def test_existing_non_empty_out_is_refused_untouched(tmp_path: Path, cli: CliRunner) -> None:
    src = tone_folder(tmp_path / "src", 2, 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    code, _, stderr = run(cli, "data", "prepare", src, out)
    assert code == 2 and "out" in stderr and "not empty" in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    assert (out / "precious.txt").read_text() == "keep me"
    assert not list(tmp_path.glob(".out.*"))


def test_jobs_do_not_change_the_output(tmp_path: Path, cli: CliRunner) -> None:
    src = tone_folder(tmp_path / "src", speakers=3, per_speaker=4)
    outs = [tmp_path / f"jobs{jobs}" / "ds" for jobs in (1, 2)]
    for jobs, out in zip((1, 2), outs, strict=True):
        code, _, stderr = run(cli, "data", "prepare", src, out, "--jobs", str(jobs), "--seed", "3")
        assert code == 0, stderr
    for name in ("metadata.json", "testdata.json", "mapping.json", "answers.csv"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name
    tensors = sorted(p.name for p in outs[0].glob("uttr-*.pt"))
    assert len(tensors) == 12 and tensors == sorted(p.name for p in outs[1].glob("uttr-*.pt"))
    for name in tensors:
        assert torch.equal(torch.load(outs[0] / name, weights_only=True),
                           torch.load(outs[1] / name, weights_only=True))


@pytest.mark.parametrize("where", ["featurize", "write", "commit"])
def test_a_crash_leaves_no_output_and_no_temp_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     where: str) -> None:
    src = tone_folder(tmp_path / "src", speakers=2, per_speaker=3)
    calls = {"n": 0}

    def crash_on_third(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("simulated crash")
            return original(*args, **kwargs)
        return wrapped

    if where == "featurize":
        monkeypatch.setattr(prepare_module, "compute_fbank", crash_on_third(compute_fbank))
    elif where == "write":
        monkeypatch.setattr(DatasetWriter, "add", crash_on_third(DatasetWriter.add))
    else:
        calls["n"] = 2
        monkeypatch.setattr(DatasetWriter, "commit", crash_on_third(DatasetWriter.commit))
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare_dataset(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out*"))
