"""A study and an export written before issue 23 still open, show, predict, export and report (CLI and API)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import automel
from automel.engine.finish.write import held_export
from tests.conftest import run


def test_the_old_export_predicts_what_it_wrote(cli: CliRunner, old_home: Path, old_data: Path, tmp_path: Path) -> None:
    best = old_home / "old" / "best"
    out = tmp_path / "again.csv"
    code, _, err = run(cli, "predict", best, "--data", old_data, "--out", out, "--device", "cpu")
    assert code == 0, err
    assert out.read_text() == (best / "output.csv").read_text()
    model = automel.load(best)
    assert model.speakers == tuple(json.loads((best / "config.json").read_text())["speakers"])
    held = held_export(best)
    assert held is not None and (held.study, held.trial, held.kind, held.members) == ("old", 4, "trial", ())


def test_the_old_study_shows_and_its_export_takes_a_format(cli: CliRunner, old_home: Path, old_data: Path) -> None:
    best = old_home / "old" / "best"
    weights = (best / "model.safetensors").read_bytes()
    code, out, err = run(cli, "show", "--study", "old", "--format", "json")
    assert code == 0, err
    assert [row["trial"] for row in json.loads(out)["trials"] if row["state"] == "COMPLETE"] == [4]
    code, out, err = run(cli, "export", "--study", "old", "--format", "torchscript", "--data", old_data)
    assert code == 0, err
    assert (best / "model.ts").is_file() and (best / "model.safetensors").read_bytes() == weights


def test_the_old_study_exports_again_with_todays_writer(cli: CliRunner, old_home: Path, old_data: Path) -> None:
    code, _, err = run(cli, "export", "--study", "old", "--trial", "4", "--data", old_data, "--adapt", "none")
    assert code == 0, err
    info = json.loads((old_home / "old" / "best" / "export.json").read_text())
    assert info["kind"] == "trial" and info["trial"] == 4
    assert info["members"] == [{"trial": 4, "weight": 1.0, "refit": False}] and info["ensemble"] is None
    assert info["valid_acc"] == 0.25  # what the trial recorded, re-measured from the files


def test_the_old_study_reports(cli: CliRunner, old_home: Path, old_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    code, _, err = run(cli, "report", "--study", "old", "--data", old_data, "--out", out)
    assert code == 0, err
    assert "trial 4" in out.read_text()
