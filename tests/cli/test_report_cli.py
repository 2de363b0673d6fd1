"""``automel report`` on the command line: the files it writes, and one-line errors (exit 2) that write nothing."""

from __future__ import annotations

import html
import json
from pathlib import Path

import optuna
import torch
from typer.testing import CliRunner

from automel.engine.handle import StudyHandle
from automel.engine.study import open_storage
from automel.report import FIGURES, PAIRED_SPEAKERS, confused_pairs, evaluate_export
from tests.conftest import run
from tests.test_report import figure_json, make_study


def test_report_writes_the_page_and_its_pngs(cli: CliRunner, isolated_home: Path, tmp_path: Path) -> None:
    make_study(isolated_home, "handmade")
    code, stdout, stderr = run(cli, "report", "--study", "handmade", "--out", tmp_path / "report.html",
                               "--device", "cpu")
    assert code == 0, stderr
    drawn = [n for n in FIGURES if n not in ("confusion", "speakers", "refit")]
    assert f"wrote {tmp_path / 'report.html'} with {len(drawn)} plots" in stdout
    assert "note: The exported model cannot be shown: there is no exported model" in stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["report.html", *(f"report-{n}.png" for n in drawn)])


def _refused(cli: CliRunner, tmp_path: Path, *args: object) -> str:
    code, stdout, stderr = run(cli, "report", *args)
    assert code == 2, (stdout, stderr)
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert list(tmp_path.iterdir()) == [], "nothing may be written"
    return stderr


def test_a_study_with_no_complete_trial_is_one_line_and_exit_2(cli: CliRunner, isolated_home: Path,
                                                               tmp_path: Path) -> None:
    make_study(isolated_home, "allpruned", complete=0, pruned=2)
    stderr = _refused(cli, tmp_path, "--study", "allpruned", "--out", tmp_path / "report.html")
    assert "error: study 'allpruned' has no complete trial: nothing to report yet" in stderr


def test_a_missing_study_is_one_line_and_exit_2(cli: CliRunner, isolated_home: Path, tmp_path: Path) -> None:
    make_study(isolated_home, "handmade")
    stderr = _refused(cli, tmp_path, "--study", "nope", "--out", tmp_path / "report.html")
    assert "no study 'nope'" in stderr


def test_an_out_into_a_missing_folder_is_one_line_and_exit_2(cli: CliRunner, isolated_home: Path,
                                                             tmp_path: Path) -> None:
    make_study(isolated_home, "handmade")
    stderr = _refused(cli, tmp_path, "--study", "handmade", "--out", tmp_path / "missing" / "report.html")
    assert f"folder {tmp_path / 'missing'} does not exist" in stderr


def test_many_speakers_get_the_most_confused_pairs_instead_of_a_matrix(cli: CliRunner, isolated_home: Path,
                                                                       tmp_path: Path) -> None:
    data = isolated_home / "many"
    speakers = PAIRED_SPEAKERS + 6
    code, _, stderr = run(cli, "data", "synth", data, "--speakers", speakers, "--utterances", 4,
                          "--test-per-speaker", 1)
    assert code == 0, stderr
    code, _, stderr = run(cli, "search", "--data", data, "--study", "many", "--trials", 1, "--steps-per-trial", 12,
                          "--no-refit", "--no-portfolio", "--encoders", "transformer", "--poolings", "mean",
                          "--heads", "softmax", "--pruner", "none", "--device", "cpu")
    assert code == 0, stderr

    code, stdout, stderr = run(cli, "report", "--study", "many", "--out", tmp_path / "report.html", "--device", "cpu")

    assert code == 0, stderr
    assert f"wrote {tmp_path / 'report.html'}" in stdout
    assert (tmp_path / "report-confusion.png").read_bytes()[:4] == b"\x89PNG"
    page = html.unescape((tmp_path / "report.html").read_text(encoding="utf-8"))
    table = figure_json(page, "confusion")
    assert '"cells":' in table and '"z":' not in table  # a table of pairs, no matrix of this many speakers
    assert "Most-confused speaker pairs: the exported trial model" in page
    best = isolated_home / "many" / "best"
    valid = len(json.loads((best / "config.json").read_text())["split"]["valid"])
    wrong = round((1 - json.loads((best / "export.json").read_text())["valid_acc"]) * valid)
    assert f"of {wrong} wrong predictions among {speakers} speakers" in page
    study = optuna.load_study(study_name="many",
                              storage=open_storage(StudyHandle(isolated_home, "many").url, heartbeat=False))
    pairs = confused_pairs(evaluate_export(study, isolated_home, device=torch.device("cpu")))
    assert pairs and pairs == sorted(pairs, key=lambda p: -p.confusions)
    assert f'["{pairs[0].first}"' in table.replace(", ", ",")  # the most-confused pair is the table's first row
