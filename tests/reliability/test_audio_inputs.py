"""What inference is fed (issue 22): finite but absurd numbers (cause 6), long audio, audio recognised by
content, file names that are not UTF-8, and trial lists with spaces in their paths (the debatable items).

Nothing NaN is ever written or returned: absurd inputs are one line naming the file, and the model's outputs
are checked finite before anything is written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import automel
from automel.errors import DataError
from automel.long_inputs import window_frames
from automel.verification import read_trials
from tests.conftest import run
from tests.reliability._models import N_MELS, make_model, snapshot, write_tone
from tests.reliability.test_user_mistakes import one_line_error


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model(tmp_path_factory.mktemp("audio") / "model")


@pytest.fixture(scope="module")
def model(model_dir: Path) -> automel.Model:
    return automel.load(model_dir)


def _write_raw(path: Path, wave: np.ndarray, subtype: str = "FLOAT") -> Path:
    sf.write(str(path), wave, 16_000, subtype=subtype)
    return path


def _outputs(command: str, model: Path, clip: Path, folder: Path) -> tuple[list[object], Path]:
    if command == "verify":
        good = write_tone(folder / "good.wav", 0.5)
        trials = folder / "trials.txt"
        trials.write_text(f"1 {clip.name} {good.name}\n0 {good.name} {clip.name}\n")
        return ["verify", model, trials, "--scores", folder / "out" / "s.txt", "--device", "cpu"], folder / "out"
    out = folder / "out" / ("p.csv" if command == "predict" else "e.npy")
    return [command, model, clip, "--out", out, "--device", "cpu"], folder / "out"


# --- cause 6: finite but huge inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["predict", "embed", "verify"])
@pytest.mark.parametrize(("case", "words"), [
    ("float WAV scaled by 1e30", ("samples reach 3e+29", "full scale")),
    ("float WAV scaled by 1e6", ("samples reach 3e+05",)),
    ("float WAV holding NaN", ("NaN or infinite",)),
    ("double WAV beyond float32", ("NaN or infinite",)),
    (".pt features of 1e20", ("1e+20", "log-mel range")),
    (".pt features of -1e6", ("1e+06", "log-mel range")),
])
def test_absurd_inputs_are_one_line_naming_the_file(cli: CliRunner, model_dir: Path, tmp_path: Path, case: str,
                                                    words: tuple[str, ...], command: str) -> None:
    wave = np.sin(np.arange(8000) / 7.0).astype(np.float64) * 0.3
    if case.startswith(".pt"):
        clip = tmp_path / "clip.pt"
        torch.save(torch.full((60, N_MELS), -1e6 if "-1e6" in case else 1e20), clip)
    elif "NaN" in case:
        clip = _write_raw(tmp_path / "clip.wav", np.where(np.arange(8000) == 100, np.nan, wave).astype(np.float32))
    elif "double" in case:
        clip = _write_raw(tmp_path / "clip.wav", wave * 1e300, subtype="DOUBLE")
    else:
        clip = _write_raw(tmp_path / "clip.wav", (wave * float(case.split()[-1])).astype(np.float32))
    (tmp_path / "out").mkdir()
    args, out = _outputs(command, model_dir, clip, tmp_path)
    code, stdout, stderr = run(cli, *args)
    one_line_error(code, stderr, clip, *words)
    assert list(out.iterdir()) == [] and "nan" not in stdout.lower()


def test_a_data_set_feature_file_of_1e20_is_named_by_data_check(cli: CliRunner, hw4_sample: Path,
                                                                  tmp_path: Path) -> None:
    data = tmp_path / "set"
    shutil.copytree(hw4_sample, data)
    victim = sorted(data.glob("uttr-*.pt"))[0]
    torch.save(torch.full_like(torch.load(victim), 1e20), victim)
    code, _, stderr = run(cli, "data", "check", data)
    assert code == 2 and "Traceback" not in stderr
    assert f"{victim}: values reach 1e+20, outside any plausible log-mel range" in stderr


@pytest.mark.parametrize("value", [1e38, 1e20, 2e4, -3e4])
def test_api_refuses_features_outside_any_log_mel_range(model: automel.Model, value: float) -> None:
    for method in (model.predict, model.predict_proba, model.embed):
        with pytest.raises(DataError, match=r"^input '0': values reach .* outside any plausible log-mel range"):
            method(np.full((50, N_MELS), value))


def test_plausible_log_mels_still_run(model: automel.Model) -> None:
    for value in (-100.0, 0.0, 15.0, 120.0):  # kaldi's floor, silence, HW4's mean, a dB scale
        assert np.isfinite(model.predict_proba(np.full((50, N_MELS), value, dtype=np.float32))).all()


@pytest.fixture
def overflowing_model(model_dir: Path, tmp_path: Path) -> Path:
    """Finite weights whose outputs overflow on ordinary input: the backstop check must catch them."""
    folder = tmp_path / "overflow"
    shutil.copytree(model_dir, folder)
    state = load_file(str(folder / "model.safetensors"))
    key = next(k for k in state if k.startswith("encoder.") and k.endswith("weight") and state[k].ndim == 2)
    state[key] = state[key] * 1e36
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "automel-run/1"})
    return folder


@pytest.mark.parametrize("command", ["predict", "embed", "verify"])
def test_outputs_are_checked_finite_before_they_are_written(cli: CliRunner, overflowing_model: Path,
                                                            tmp_path: Path, command: str) -> None:
    clip = write_tone(tmp_path / "clip.wav", 0.5)
    (tmp_path / "out").mkdir()
    args, out = _outputs(command, overflowing_model, clip, tmp_path)
    code, stdout, stderr = run(cli, *args)
    one_line_error(code, stderr, "clip.wav", "output is not finite")
    assert list(out.iterdir()) == [] and "nan" not in stdout.lower()


def test_the_api_never_returns_nan(overflowing_model: Path) -> None:
    with pytest.raises(DataError, match=r"^0: the model's output is not finite"):
        automel.load(overflowing_model).predict(np.full((50, N_MELS), 15.0, dtype=np.float32))


# --- debatable: long inputs run in windows ------------------------------------------------------------------------


def _spy(model: automel.Model) -> tuple[list[int], Any]:
    widths: list[int] = []
    hook = model.inference.model.encoder.register_forward_pre_hook(lambda _, args: widths.append(args[0].shape[1]))
    return widths, hook


def test_a_long_input_runs_in_bounded_windows(model: automel.Model) -> None:
    window = window_frames(model.inference.record.params)
    long = np.random.default_rng(0).normal(15.0, 3.0, (40 * window + 17, N_MELS)).astype(np.float32)
    widths, hook = _spy(model)
    try:
        probs = model.predict_proba([long, long[:300]])
        vectors = model.embed(long).vectors
    finally:
        hook.remove()
    assert max(widths) <= window  # the encoder never sees more than one window, whatever the length
    assert np.isfinite(probs).all() and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.isfinite(vectors).all() and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_a_short_input_runs_whole_and_unchanged(model: automel.Model) -> None:
    window = window_frames(model.inference.record.params)
    short = np.random.default_rng(1).normal(15.0, 3.0, (2 * window, N_MELS)).astype(np.float32)
    widths, hook = _spy(model)
    try:
        probs = model.predict_proba(short)
    finally:
        hook.remove()
    assert widths == [2 * window]
    x = torch.from_numpy(short)[None]
    with torch.no_grad():
        direct = torch.softmax(model.inference.model(x, torch.ones(1, 2 * window, dtype=torch.bool)), -1).numpy()
    np.testing.assert_allclose(probs, direct, rtol=1e-5, atol=1e-6)


def test_a_long_wav_through_the_cli_is_windowed(cli: CliRunner, model_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    clip = write_tone(tmp_path / "long.wav", 60.0)
    widths: list[int] = []
    original = torch.nn.Module.__call__

    def spy(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        if type(self).__name__ == "SpeakerModel" and args:
            widths.append(args[0].shape[1])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "__call__", spy)
    code, _, stderr = run(cli, "predict", model_dir, clip, "--out", tmp_path / "p.csv", "--device", "cpu")
    assert code == 0, stderr
    assert widths and max(widths) <= 1000 and "nan" not in (tmp_path / "p.csv").read_text()
    said = " ".join(stderr.split())  # one progress line says how the long input runs
    assert "long.wav: 60 s long: it runs in" in said and "overlapping windows" in said


# --- debatable: audio by content, not by name ---------------------------------------------------------------------


def test_audio_is_decoded_by_content_whatever_its_name(cli: CliRunner, model_dir: Path, tmp_path: Path) -> None:
    wave = (np.sin(np.arange(16_000) / 9.0) * 0.3).astype(np.float32)
    sf.write(str(tmp_path / "real.mp3"), wave, 16_000, format="MP3")
    shutil.copy(tmp_path / "real.mp3", tmp_path / "mp3-named.wav")
    sf.write(str(tmp_path / "wav-named.mp3"), wave, 16_000, format="WAV")
    sf.write(str(tmp_path / "odd.audio"), wave, 16_000, format="FLAC")
    names = ["real.mp3", "mp3-named.wav", "wav-named.mp3", "odd.audio"]
    code, _stdout, stderr = run(cli, "embed", model_dir, *(tmp_path / n for n in names), "--out", tmp_path / "e.npy",
                               "--device", "cpu")
    assert code == 0, stderr
    assert np.load(tmp_path / "e.npy").shape[0] == 4


def test_a_file_that_is_not_audio_is_refused_by_content(cli: CliRunner, model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "notes.audio").write_text("not audio")
    code, _, stderr = run(cli, "embed", model_dir, tmp_path / "notes.audio", "--out", tmp_path / "e.npy")
    one_line_error(code, stderr, "notes.audio", "not an audio file")
    assert not (tmp_path / "e.npy").exists()


def test_a_wav_whose_name_is_not_utf8_does_not_fail_its_folder(cli: CliRunner, model_dir: Path,
                                                               tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    wave = (np.sin(np.arange(8000) / 9.0) * 0.3).astype(np.float32)
    sf.write(os.fsencode(folder) + b"/caf\xe9.wav", wave, 16_000)
    write_tone(folder / "plain.wav", 0.5)
    for command, out in (("embed", tmp_path / "e.npy"), ("predict", tmp_path / "p.csv")):
        code, _stdout, stderr = run(cli, command, model_dir, folder, "--out", out, "--device", "cpu")
        assert code == 0, stderr
    assert (tmp_path / "e.ids.txt").read_text(encoding="utf-8").splitlines() == [
        f"{folder}/caf\\xe9.wav", f"{folder}/plain.wav"]
    assert "caf\\xe9.wav" in (tmp_path / "p.csv").read_text(encoding="utf-8")


# --- debatable: trial lists with spaces in their paths --------------------------------------------------------------


@pytest.fixture
def spaced(tmp_path: Path) -> Path:
    folder = tmp_path / "my clips"
    write_tone(folder / "first clip.wav", 0.5)
    write_tone(folder / "second clip.wav", 0.6)
    write_tone(folder / "it's.wav", 0.4)
    return folder


@pytest.mark.parametrize("line", [
    "1\tmy clips/first clip.wav\tmy clips/second clip.wav\n0\tmy clips/it's.wav\tmy clips/first clip.wav",
    "1 \"my clips/first clip.wav\" 'my clips/second clip.wav'\n0 \"my clips/it's.wav\" \"my clips/first clip.wav\"",
    "\"my clips/first clip.wav\" \"my clips/it's.wav\"",
    "my clips/first clip.wav\tmy clips/second clip.wav",
])
def test_trial_lists_take_tabs_or_quotes_for_paths_with_spaces(cli: CliRunner, model_dir: Path, spaced: Path,
                                                              tmp_path: Path, line: str) -> None:
    trials = tmp_path / "trials.txt"
    trials.write_text(f"{line}\n")
    code, _stdout, stderr = run(cli, "verify", model_dir, trials, "--scores", tmp_path / "s.txt", "--device", "cpu")
    assert code == 0, stderr
    written = (tmp_path / "s.txt").read_text().splitlines()
    assert len(written) == line.count("\n") + 1 and "first clip.wav" in written[0]
    # the scores file quotes such paths, so that without its scores it reads back as the same trial list
    (tmp_path / "again.txt").write_text("".join(w.rsplit(" ", 1)[0] + "\n" for w in written))
    assert read_trials(tmp_path / "again.txt").trials == read_trials(trials).trials


@pytest.mark.parametrize(("line", "words"), [
    ("1 my clips/first clip.wav my clips/second clip.wav", ("found 7 fields", "quotes", "tabs")),
    ("1 \"my clips/first clip.wav my clips/second clip.wav", ("no closing quotation", "quotes", "tabs")),
])
def test_an_unreadable_trial_line_says_how_to_write_spaces(cli: CliRunner, model_dir: Path, spaced: Path,
                                                           tmp_path: Path, line: str, words: tuple[str, ...]) -> None:
    trials = tmp_path / "trials.txt"
    trials.write_text(f"{line}\n")
    before = snapshot(tmp_path)
    code, _, stderr = run(cli, "verify", model_dir, trials, "--scores", tmp_path / "s.txt", "--device", "cpu")
    one_line_error(code, stderr, trials, "line 1", *words)
    assert snapshot(tmp_path) == before


def test_verify_help_says_how_to_write_paths_with_spaces(cli: CliRunner) -> None:
    code, stdout, _ = run(cli, "verify", "--help")
    assert code == 0 and "quotes" in stdout and "tabs" in stdout
