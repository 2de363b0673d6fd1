"""``automel search --noise DIR --rir DIR``: the banks are converted once, recorded in the study, used by trials
and refits, kept on resume and refused when they change (automel.engine.banks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from automel.data.augment import banks as banks_module
from automel.data.augment.banks import load_bank
from automel.engine.banks import BANKS_ATTR
from tests.conftest import run
from tests.data.test_augment_banks import noise_folder, room_response
from tests.engine.test_search_cli import load

TINY = ["--encoders", "transformer", "--poolings", "attentive-stats", "--heads", "am-softmax", "--device", "cpu",
        "--steps-per-trial", 10, "--quality", "fast", "--no-refit", "--seed", 3]


def test_search_refuses_a_missing_folder_before_the_study(cli: CliRunner, hw4_sample: Path, tmp_path: Path,
                                                          isolated_home: Path) -> None:
    empty = tmp_path / "rirs"
    empty.mkdir()
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--study", "b", *TINY, "--trials", 1, "--rir", empty)
    assert code == 2
    assert [line for line in stderr.splitlines() if line.strip()] == \
        [f"error: --rir {empty}: holds no audio files (.flac, .ogg, .wav)"]
    assert not (isolated_home / "b.db").exists()


def test_trials_and_refits_use_the_studys_banks(cli: CliRunner, hw4_sample: Path, tmp_path: Path,
                                                isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    noise, rirs = noise_folder(tmp_path / "noise"), tmp_path / "rirs"
    room_response(rirs / "hall.wav", 0.7)
    loaded: list[str] = []

    def spy(array: str, device: str) -> torch.Tensor:
        loaded.append(array)
        return load_bank(array, device)

    monkeypatch.setattr(banks_module, "load_bank", spy)
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--study", "b", *TINY, "--trials", 2,
                          "--noise", noise, "--rir", rirs)
    assert code == 0, stderr
    assert "note: --noise: skipped broken.wav" in stderr and f"note: --noise {noise.resolve()}: 2 files" in stderr
    study = load(isolated_home, "b")
    recorded = study.user_attrs[BANKS_ATTR]
    assert set(recorded) == {"noise", "rir"} and recorded["rir"]["source"] == str(rirs.resolve())
    assert all(Path(entry["array"]).parent.parent == isolated_home / "cache" for entry in recorded.values())
    trials = study.get_trials(deepcopy=False)
    assert all(t.user_attrs[BANKS_ATTR] == recorded for t in trials)
    # the portfolio's transformer runs first, with noise and reverberation at "light": its batches drew from both
    assert trials[0].params["train.noise_aug"] == "light" and trials[0].params["train.reverb_aug"] == "light"
    assert {recorded["noise"]["array"], recorded["rir"]["array"]} <= set(loaded)
    # resumed without the flags, the study keeps its banks; a refit trains with the trial's
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--study", "b", *TINY, "--trials", 2)
    assert code == 0, stderr
    assert load(isolated_home, "b").user_attrs[BANKS_ATTR] == recorded
    code, _, stderr = run(cli, "refit", "--study", "b", "--steps", 3, "--quality", "fast", "--device", "cpu")
    assert code == 0, stderr
    settings = json.loads((isolated_home / "b" / "best" / "config.json").read_text())["settings"]
    assert settings["noise_bank"] == recorded["noise"]["array"] and settings["rir_bank"] == recorded["rir"]["array"]
    # another folder for a study whose trials ran: refused, one line
    other = noise_folder(tmp_path / "other", broken=False)
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--study", "b", *TINY, "--trials", 3, "--noise", other)
    assert code == 2
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"was created with --noise {noise.resolve()}, not --noise {other}" in errors[0]
