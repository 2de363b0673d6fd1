"""The one export writer: every way of exporting writes the same ``export.json``, under the study's lock."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch

from automel.engine.finish import FinishOptions, finish_study
from automel.engine.finish.write import EXPORT_INFO, add_formats, export_best, export_trial, held_export
from automel.engine.handle import StudyHandle
from automel.errors import StudyError

CPU = torch.device("cpu")
KEYS = {"study", "trial", "kind", "value", "members", "ensemble"}


def test_a_trial_export_and_a_refit_export_say_the_same_things(old_study: tuple[StudyHandle, optuna.Study],
                                                               old_data: Path, tmp_path: Path) -> None:
    handle, study = old_study
    trial = export_trial(handle, study, study.trials[4], tmp_path / "trial", data_root=old_data, device=CPU)
    lines: list[str] = []
    refit = finish_study(handle, study, FinishOptions(steps=2), CPU, data_root=old_data, note=lines.append)
    assert trial.kind == "trial" and trial.valid_acc == 0.25 and refit.kind == "refit"
    exported = [json.loads((path / EXPORT_INFO).read_text()) for path in (trial.path, refit.path)]
    assert all(set(info) >= KEYS for info in exported)
    assert exported[0]["members"] == [{"trial": 4, "weight": 1.0, "refit": False}]
    assert exported[1]["members"][0]["trial"] == 4 and exported[1]["members"][0]["refit"] is True
    assert refit.path == handle.best and handle.export_lock.exists()
    assert "refit on all labelled data" in (refit.path / "README.md").read_text()
    assert any("refit of trial 4" in line and "2 steps" in line for line in lines)
    assert not (tmp_path / ".export.lock").exists()  # a folder of the user's gets no lock file of ours


def test_export_best_writes_once(old_study: tuple[StudyHandle, optuna.Study], old_data: Path) -> None:
    handle, study = old_study
    written, best = export_best(handle, study, old_data)
    assert written is None and best.number == 4  # the fixture's export already holds trial 4
    (handle.best / EXPORT_INFO).unlink()
    written, best = export_best(handle, study, old_data)
    assert written is not None and written.path == handle.best and held_export(handle.best) is not None


def test_adding_a_format_never_changes_the_model(old_study: tuple[StudyHandle, optuna.Study]) -> None:
    handle, _ = old_study
    before = {p.name: p.read_bytes() for p in handle.best.iterdir()}
    written = add_formats(handle.best, ["torchscript"])
    assert set(written) == {"torchscript"} and written["torchscript"].is_file()
    assert all((handle.best / name).read_bytes() == data for name, data in before.items())


def test_an_existing_folder_is_refused_without_replace(old_study: tuple[StudyHandle, optuna.Study],
                                                       old_data: Path, tmp_path: Path) -> None:
    handle, study = old_study
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    with pytest.raises(Exception, match="taken"):
        export_trial(handle, study, study.trials[4], tmp_path / "taken", replace=False, data_root=old_data, device=CPU)
    assert (tmp_path / "taken" / "mine.txt").read_text() == "keep"


def test_a_trial_without_kept_weights_is_one_line(old_study: tuple[StudyHandle, optuna.Study], old_data: Path,
                                                  tmp_path: Path) -> None:
    handle, study = old_study
    with pytest.raises(StudyError, match="trial 0's weights were not kept"):
        export_trial(handle, study, study.trials[0], tmp_path / "x", data_root=old_data, device=CPU)
    assert not (tmp_path / "x").exists()
