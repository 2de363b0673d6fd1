"""Noise and impulse-response banks from audio folders (automel.data.augment.banks) and ``train --noise/--rir``."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from automel.data.augment import banks as banks_module
from automel.data.augment.banks import NOISE, RIR, load_bank, prepare_bank
from automel.data.augment.mel import FrontEnd
from automel.data.frontend import compute_fbank, load_audio
from automel.errors import DataError
from tests.conftest import SHARED_DATA, need, run

RATE = 16_000


def noise_folder(root: Path, broken: bool = True) -> Path:
    """Two decodable files (a WAV at 16 kHz, a FLAC at 22.05 kHz in a subfolder) and, optionally, a broken one."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    sf.write(root / "white.wav", (0.1 * rng.standard_normal(RATE)).astype(np.float32), RATE)
    (root / "sub").mkdir(exist_ok=True)
    t = np.arange(11_025) / 22_050
    sf.write(root / "sub" / "hum.flac", (0.2 * np.sin(2 * np.pi * 120 * t)).astype(np.float32), 22_050)
    if broken:
        (root / "broken.wav").write_bytes(b"RIFF, but not really")
    return root


def room_response(path: Path, rt60: float) -> Path:
    """An impulse response: silence, the direct path, then noise whose power falls 60 dB per ``rt60`` s."""
    rng = np.random.default_rng(1)
    t = np.arange(RATE) / RATE
    tail = rng.standard_normal(RATE) * 10 ** (-3 * t / rt60) * 0.05
    wave = np.concatenate([np.zeros(800), [1.0], np.zeros(31), tail])[: RATE + 800]
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave.astype(np.float32), RATE)
    return path


def unusable_folder(tmp: Path, case: str) -> Path:
    folder = tmp / case
    if case == "file":
        folder.write_bytes(b"")
    elif case in ("empty", "undecodable"):
        folder.mkdir()
    if case == "undecodable":
        (folder / "x.wav").write_bytes(b"junk")
    return folder


@pytest.mark.parametrize(("case", "message"), [
    ("missing", "no such folder"), ("file", "not a folder"), ("empty", "holds no audio files"),
    ("undecodable", r"holds no decodable audio \(x\.wav \(cannot decode"),
])
def test_unusable_folders_are_one_line_naming_them(tmp_path: Path, case: str, message: str) -> None:
    folder = unusable_folder(tmp_path, case)
    with pytest.raises(DataError, match=message) as caught:
        prepare_bank(NOISE, folder, FrontEnd(), tmp_path / "home")
    assert str(caught.value).startswith(f"`noise` {folder}: ") and "\n" not in str(caught.value)


def test_noise_bank_is_the_front_ends_fbank_and_is_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    folder, home = noise_folder(tmp_path / "noise"), tmp_path / "home"
    with caplog.at_level(logging.INFO, logger="automel"):
        bank = prepare_bank(NOISE, folder, FrontEnd(), home)
    assert bank.files == 2 and len(bank.skipped) == 1 and bank.skipped[0].startswith("broken.wav (cannot decode")
    assert bank.assumed and bank.path.parent == home / "cache" and bank.path.name == f"noise-{bank.fingerprint}"
    assert any("skipped broken.wav" in m for m in caplog.messages)
    assert any("records no audio front end" in m and "40-bin Kaldi fbank" in m for m in caplog.messages)
    array = np.load(bank.array)
    hum = compute_fbank(load_audio(folder / "sub" / "hum.flac"))  # resampled to 16 kHz, then the front end
    white = compute_fbank(load_audio(folder / "white.wav"))
    assert array.shape == (len(hum) + len(white), 40) == (bank.size, 40)
    assert np.array_equal(array, np.concatenate([hum, white]))  # files in sorted order: sub/hum.flac, white.wav
    # a second run reads the cache; a changed file is converted again
    monkeypatch.setattr(banks_module, "compute_fbank", lambda *_: pytest.fail("converted twice"))
    assert prepare_bank(NOISE, folder, FrontEnd(), home) == bank
    monkeypatch.undo()
    sf.write(folder / "white.wav", np.zeros(RATE // 2, np.float32), RATE)
    changed = prepare_bank(NOISE, folder, FrontEnd(), home)
    assert changed.fingerprint != bank.fingerprint and changed.size < bank.size


def test_load_bank_reads_once_per_device(tmp_path: Path) -> None:
    bank = prepare_bank(NOISE, noise_folder(tmp_path / "noise", broken=False), FrontEnd(), tmp_path / "home")
    tensor = load_bank(str(bank.array), "cpu")
    assert tensor.dtype == torch.float32 and tensor.shape == (bank.size, 40)
    assert load_bank(str(bank.array), "cpu") is tensor


@pytest.mark.parametrize("rt60", [0.3, 0.6])
def test_rir_envelope_keeps_the_direct_path_and_the_rooms_decay(tmp_path: Path, rt60: float) -> None:
    folder = tmp_path / "rirs"
    room_response(folder / "room.wav", rt60)
    bank = prepare_bank(RIR, folder, FrontEnd(), tmp_path / "home")
    kernels = np.load(bank.array)  # (K, L, F)
    assert kernels.shape == (1, 101, 40) and np.all(kernels[:, 0] == 1.0) and kernels[:, 1:].max() <= 1.0
    lags = np.arange(3, int(rt60 / 0.01 * 0.6))  # the first 36 dB of the decay
    slopes = np.polyfit(lags, np.log(kernels[0, lags]), 1)[0]  # (F,): one noisy tail per band
    assert math.log(1e6) * 0.01 / -np.median(slopes) == pytest.approx(rt60, rel=0.1)
    broadband = np.polyfit(lags, np.log(kernels[0, lags].sum(1)), 1)[0]
    assert math.log(1e6) * 0.01 / -broadband == pytest.approx(rt60, rel=0.1)


def test_hu_nonspeech_converts_where_it_lies(tmp_path: Path) -> None:
    """The real noise clips in ../shared (research use only, never packaged), read in place through links."""
    source = need(SHARED_DATA / "hu-nonspeech")
    folder = tmp_path / "hu"
    folder.mkdir()
    for name in ("n1.wav", "n2.wav", "n3.wav"):
        (folder / name).symlink_to(source / name)
    bank = prepare_bank(NOISE, folder, FrontEnd(), tmp_path / "home")
    assert bank.files == 3 and not bank.skipped and bank.size > 500  # 20 kHz clips, 8.4 s in all
    array = np.load(bank.array)
    assert np.isfinite(array).all() and array.std() > 0.5


CONFIG = {"encoder": "transformer", "pooling": "mean", "head": "softmax", "encoder.transformer.d_model": 32,
          "encoder.transformer.nhead": 2, "encoder.transformer.dim_feedforward": 64,
          "encoder.transformer.num_layers": 1, "train.batch_size": 8, "train.segment_len": 64}


def test_train_refuses_a_missing_noise_folder_before_training(cli: CliRunner, hw4_sample: Path,
                                                              tmp_path: Path) -> None:
    missing = tmp_path / "no-such-noise"
    code, stdout, stderr = run(cli, "train", "--preset", "simple", "--data", hw4_sample, "--steps", 5,
                               "--device", "cpu", "--noise", missing, "--out", tmp_path / "run")
    assert code == 2
    errors = [line for line in stderr.splitlines() if line.strip()]
    assert errors == [f"error: --noise {missing}: no such folder"]
    assert "Training" not in stdout and not (tmp_path / "run").exists()


def test_train_mixes_a_converted_noise_folder(cli: CliRunner, hw4_sample: Path, tmp_path: Path,
                                              isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    noise, rirs = noise_folder(tmp_path / "noise"), tmp_path / "rirs"
    room_response(rirs / "room.wav", 0.4)
    loaded: list[str] = []

    def spy(array: str, device: str) -> torch.Tensor:
        loaded.append(array)
        return load_bank(array, device)

    monkeypatch.setattr(banks_module, "load_bank", spy)
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({**CONFIG, "train.noise_aug": "strong", "train.reverb_aug": "strong"}))
    out = tmp_path / "run"
    code, stdout, stderr = run(cli, "train", "--config", config, "--data", hw4_sample, "--steps", 6,
                               "--valid-every", 6, "--device", "cpu", "--noise", noise, "--rir", rirs, "--out", out)
    assert code == 0, stderr
    assert f"--noise {noise.resolve()}: 2 files" in stdout and f"--rir {rirs.resolve()}: 1 files" in stdout
    assert "note: --noise: skipped broken.wav (cannot decode" in stderr
    assert "records no audio front end" in stderr and "HW4 one (40-bin Kaldi fbank, 25 ms window, 10 ms hop, 16 kHz)" \
        in " ".join(stderr.split())
    settings = json.loads((out / "config.json").read_text())["settings"]
    assert Path(settings["noise_bank"]).parent.parent == isolated_home / "cache"
    assert Path(settings["rir_bank"]).parent.name.startswith("rir-")
    assert set(loaded) == {settings["noise_bank"], settings["rir_bank"]}  # the training batches drew from both


def test_train_says_when_a_bank_goes_unused(cli: CliRunner, hw4_sample: Path, tmp_path: Path) -> None:
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps(CONFIG))
    code, stdout, stderr = run(cli, "train", "--config", config, "--data", hw4_sample, "--steps", 2,
                               "--valid-every", 2, "--device", "cpu", "--noise", noise_folder(tmp_path / "n"),
                               "--out", tmp_path / "run")
    assert code == 0, stderr
    assert "train.noise_aug is off, so it is not used" in " ".join(stdout.split())
