"""A study from Python: ``automel.show`` (what ``automel show`` prints), ``automel.leaderboard`` and
``automel.api.report``, on studies written by hand (no training); a missing study or a bad argument is one
typed line."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

import automel
import automel.api
from automel.engine.handle import StudyHandle
from automel.errors import ConfigError, StudyError
from automel.report import FIGURES
from tests.conftest import run
from tests.test_report import make_study


@pytest.fixture
def study(isolated_home: Path) -> optuna.Study:
    """Three complete trials, two pruned, and one failed with its reason, in the test's home."""
    made = make_study(isolated_home, "handmade")
    made.add_trial(create_trial(state=TrialState.FAIL, user_attrs={"fail_reason": "out of memory"}))
    return made


def test_show_gives_the_leaderboard_importances_and_every_trial(study: optuna.Study) -> None:
    overview = automel.show()  # the only study of the home
    assert overview.study == "handmade" and overview.direction == "maximize"
    assert [row.trial for row in overview.leaderboard] == [2, 1, 0]  # best first
    assert overview.leaderboard[0].valid_acc == pytest.approx(0.7)
    assert overview.importances is not None and set(overview.importances) <= set(study.best_params)
    assert sum(overview.importances.values()) == pytest.approx(1.0)
    assert (overview.counts["complete"], overview.counts["pruned"], overview.counts["fail"]) == (3, 2, 1)
    assert [(t.trial, t.rank, t.state) for t in overview.trials] == [
        (2, 1, "COMPLETE"), (1, 2, "COMPLETE"), (0, 3, "COMPLETE"), (3, None, "PRUNED"), (4, None, "PRUNED"),
        (5, None, "FAIL")]
    assert [t.trial for t in overview.pruned] == [3, 4] and [t.trial for t in overview.failed] == [5]
    assert overview.failure_lines() == ["trial 5 failed: out of memory"]
    assert overview.trials[0].params == study.trials[2].params and overview.trials[0].n_params == 150_000
    text = str(overview)
    assert text.startswith("rank") and "pruned: 2   failed: 1" in text and "trial 5 failed: out of memory" in text


def test_show_json_is_what_the_cli_prints(study: optuna.Study, cli: CliRunner) -> None:
    code, stdout, stderr = run(cli, "show", "--study", "handmade", "--format", "json")
    assert code == 0, stderr
    assert json.loads(json.dumps(automel.show("handmade").to_json())) == json.loads(stdout)


def test_show_without_two_complete_trials_has_no_importances(isolated_home: Path) -> None:
    make_study(isolated_home, "small", complete=1, pruned=0)
    overview = automel.show("small", home=isolated_home, top=1)
    assert overview.importances is None and len(overview.leaderboard) == 1
    assert "parameter importances need at least two completed trials" in str(overview)


def test_leaderboard_of_a_study_by_name(study: optuna.Study, isolated_home: Path) -> None:
    board = automel.leaderboard("handmade", home=isolated_home, top=2)
    assert [row.trial for row in board] == [2, 1] and board.to_dicts()[0]["n_params"] == 150_000


def test_a_study_in_another_storage(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    make_study(tmp_path / "elsewhere", "kept")
    url = StudyHandle(tmp_path / "elsewhere", "kept").url  # sqlite:///<elsewhere>/kept.db, given explicitly
    overview = automel.show("kept", home=tmp_path / "home", storage=url)
    assert overview.study == "kept" and len(overview.leaderboard) == 3
    assert list((tmp_path / "home").iterdir()) == []  # reading a study writes nothing in the home


@pytest.mark.parametrize(("call", "error", "words"), [
    (lambda home: automel.show("nope", home=home), StudyError, "no study 'nope' in {home}"),
    (lambda home: automel.show(home=home / "empty"), StudyError, "no studies; pass `study`"),
    (lambda home: automel.show("../x", home=home), ConfigError, "invalid study name '../x'"),
    (lambda home: automel.show("handmade", home=home, top=0), ConfigError, "`top` must be a whole number"),
    (lambda home: automel.show(3, home=home), ConfigError, "`study` must be a non-empty string, got 3"),
    (lambda home: automel.leaderboard("nope", home=home), StudyError, "no study 'nope'"),
    (lambda home: automel.show("handmade", home=home, storage=f"sqlite:///{home}/no/such.db"), StudyError, "no"),
])
def test_a_missing_study_or_a_bad_argument_is_one_typed_line(study: optuna.Study, isolated_home: Path, call: object,
                                                               error: type, words: str) -> None:
    with pytest.raises(error) as caught:
        call(isolated_home)  # type: ignore[operator]
    message = str(caught.value)
    assert words.format(home=isolated_home) in message and "\n" not in message, message


def test_report_writes_the_page_and_its_pngs(study: optuna.Study, tmp_path: Path) -> None:
    written = automel.api.report("handmade", tmp_path / "report.html", device="cpu")
    drawn = [n for n in FIGURES if n not in ("confusion", "speakers", "refit")]
    assert written.html == tmp_path / "report.html" and sorted(written.figures) == sorted(drawn)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["report.html", *(f"report-{n}.png" for n in drawn)])
    assert written.pngs and all(p.read_bytes()[:4] == b"\x89PNG" for p in written.pngs)
    assert any("no exported model" in note for note in written.notes)


@pytest.mark.parametrize(("study_name", "out", "error", "words"), [
    ("handmade", "missing/report.html", ConfigError, "missing does not exist"),
    ("nope", "report.html", StudyError, "no study 'nope'"),
    ("handmade", None, ConfigError, "`out` must be a path"),
])
def test_report_refusals_are_one_line_and_write_nothing(study: optuna.Study, tmp_path: Path, study_name: str,
                                                        out: str | None, error: type, words: str) -> None:
    with pytest.raises(error) as caught:
        automel.api.report(study_name, tmp_path / out if out else None, device="cpu")  # type: ignore[arg-type]
    assert words in str(caught.value) and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_study_with_no_complete_trial_has_no_report(isolated_home: Path, tmp_path: Path) -> None:
    make_study(isolated_home, "allpruned", complete=0, pruned=2)
    with pytest.raises(StudyError, match="study 'allpruned' has no complete trial: nothing to report yet"):
        automel.api.report("allpruned", tmp_path / "report.html")
    assert list(tmp_path.iterdir()) == []


def test_open_study_finds_the_only_study_of_the_home(study: optuna.Study, isolated_home: Path) -> None:
    handle, loaded = automel.api.studies.open_study(None, None, None)  # AUTOMEL_HOME, as the CLI's default
    assert (handle.home, handle.name, handle.storage) == (isolated_home, "handmade", None)
    assert loaded.study_name == "handmade" and len(loaded.trials) == len(study.trials)
