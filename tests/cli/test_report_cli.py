"""``automel report`` on the command line: the files it writes, and one-line errors (exit 2) that write nothing."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from automel.report import FIGURES
from tests.conftest import run
from tests.test_report import make_study


def test_report_writes_the_page_and_its_pngs(cli: CliRunner, isolated_home: Path, tmp_path: Path) -> None:
    make_study(isolated_home, "handmade")
    code, stdout, stderr = run(cli, "report", "--study", "handmade", "--out", tmp_path / "report.html",
                               "--device", "cpu")
    assert code == 0, stderr
    drawn = [n for n in FIGURES if n not in ("confusion", "speakers")]
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
