"""``automel.report``: the figures of a real (tiny) search, the page as a person sees it in headless Chromium,
and no partial output when something is wrong."""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from automel.engine.handle import StudyHandle
from automel.engine.study import open_storage
from automel.errors import ConfigError, StudyError
from automel.report import FIGURES, METRIC, STATUS_ID, evaluate_export, evaluate_source, write_report
from tests.conftest import HW4_SAMPLE, need, run

CPU = torch.device("cpu")


# --- headless Chromium -----------------------------------------------------------------------------------------


def chromium() -> str:
    """Debian's ``chromium`` (``.ci/run`` installs it); skip without it, except under CI, where it must be there."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "headless Chromium is not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; .ci/run should have installed it")
        pytest.skip(message)
    return found


def _browse(page: Path, scratch: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # --no-sandbox: CI runs as root; --virtual-time-budget: let the page's timers run before the dump or shot.
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={scratch / 'chromium-profile'}", "--virtual-time-budget=10000", *args, page.as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def render_status(page: Path, scratch: Path) -> dict[str, Any]:
    """What the page recorded once Chromium rendered it: plots expected, drawn, missing; JavaScript errors."""
    done = _browse(page, scratch, "--dump-dom")
    match = re.search(rf'<pre id="{STATUS_ID}"[^>]*>(.*?)</pre>', done.stdout, re.S)
    assert match, f"Chromium's DOM has no {STATUS_ID} (exit {done.returncode}): {done.stderr[-2000:]}"
    assert match.group(1).strip(), "the page never recorded its render status (did its script run?)"
    return dict(json.loads(html.unescape(match.group(1))))


def screenshot(page: Path, scratch: Path) -> Path:
    """A screenshot of the page, kept under the test's tmp_path (its path is printed)."""
    shot = scratch / f"{page.stem}-screenshot.png"
    done = _browse(page, scratch, f"--screenshot={shot}", "--window-size=1400,4000")
    assert shot.is_file() and shot.stat().st_size > 20_000, done.stderr[-2000:]
    print(f"screenshot of {page.name}: {shot}")
    return shot


def assert_all_rendered(page: Path, scratch: Path, plots: int) -> None:
    status = render_status(page, scratch)
    assert status == {"expected": plots, "plots": plots, "rendered": plots, "missing": [], "errors": []}, status
    screenshot(page, scratch)


# --- studies -----------------------------------------------------------------------------------------------------

FAST = ["--encoders", "transformer", "--poolings", "mean,attentive-stats", "--heads", "softmax,am-softmax",
        "--device", "cpu", "--no-refit", "--quality", "fast"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, optuna.Study]:
    """A real search on the HW4 sample, once per module: six 10-step trials (the median pruner lets the first
    four finish, so importances have complete trials to compare), and its automatic export."""
    home = tmp_path_factory.mktemp("report-home")
    code, _, stderr = run(CliRunner(), "search", "--data", need(HW4_SAMPLE), "--study", "tiny", "--home", home,
                          "--steps-per-trial", 10, "--trials", 6, "--pruner", "median", "--seed", 1, *FAST)
    assert code == 0, stderr
    study = optuna.load_study(study_name="tiny", storage=open_storage(StudyHandle(home, "tiny").url, heartbeat=False))
    return home, study


@pytest.fixture(scope="module")
def refitted(searched: tuple[Path, optuna.Study], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of that study's home after `automel refit --steps 60`: its export trained on the validation
    utterances too (the default after a search, without --no-refit)."""
    home = tmp_path_factory.mktemp("refit-home")
    shutil.copytree(searched[0], home, dirs_exist_ok=True)
    code, _, stderr = run(CliRunner(), "refit", "--study", "tiny", "--home", home, "--steps", 60, "--quality", "fast",
                          "--device", "cpu")
    assert code == 0, stderr
    return home


def make_study(home: Path, name: str, complete: int = 3, pruned: int = 2) -> optuna.Study:
    """A study written by hand, without training: trials with components, a learning rate and curves."""
    study = optuna.create_study(storage=open_storage(StudyHandle(home, name).url, heartbeat=False), study_name=name,
                                direction="maximize")
    with warnings.catch_warnings():  # experimental in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([METRIC])
    choices = {"encoder": ["transformer", "conformer"], "pooling": ["mean", "attentive-stats"],
               "head": ["softmax", "am-softmax"]}
    distributions: dict[str, Any] = {k: CategoricalDistribution(v) for k, v in choices.items()}
    distributions["train.lr"] = FloatDistribution(1e-4, 1e-2, log=True)
    for k in range(complete + pruned):
        params: dict[str, Any] = {key: values[(k >> i) % 2] for i, (key, values) in enumerate(choices.items())}
        params["train.lr"] = 10 ** (-4 + 0.4 * k)
        stopped = k >= complete
        curve = {3: 0.2 + 0.03 * k} if stopped else {3: 0.3 + 0.05 * k, 6: 0.5 + 0.05 * k, 9: 0.6 + 0.05 * k}
        study.add_trial(create_trial(state=TrialState.PRUNED if stopped else TrialState.COMPLETE,
                                     value=None if stopped else curve[9], params=params, distributions=distributions,
                                     intermediate_values=curve, user_attrs={"n_params": 50_000 * (k % 3 + 1)}))
    return study


def figure_json(page: str, name: str) -> str:
    """The plotly call of figure ``name`` in the page."""
    start = page.index(f'id="figure-{name}"')
    return page[start:page.index("</script>", start)]


# --- tests -------------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_report_of_a_search_shows_every_plot_in_chromium(searched: tuple[Path, optuna.Study], tmp_path: Path) -> None:
    home, study = searched
    assert study.metric_names == [METRIC]  # named where the search creates its study
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert len(complete) >= 2, [t.state for t in study.get_trials(deepcopy=False)]

    report = write_report(study, home, tmp_path / "report.html", device=CPU)

    drawn = [name for name in FIGURES if name != "refit"]  # the export is the best trial itself: no refit curve
    assert report.figures == drawn and report.notes == []
    assert report.pngs == [tmp_path / f"report-{name}.png" for name in drawn]
    for png in report.pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["report.html", *(p.name for p in report.pngs)])
    page = report.html.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\ssrc=", page), "the page must work offline: plotly.js inlined, no src"
    assert page.count("Plotly.newPlot(") == len(drawn)
    assert "Objective Value" not in page and METRIC in figure_json(page, "importances")
    for name in ("encoder", "pooling", "head"):
        assert f'"{name}"' in figure_json(page, "components")
    # the confusion matrix is the export's, on the study's validation split: it matches the accuracy re-measured
    # at export time
    validation = evaluate_export(study, home, device=CPU)
    exported = json.loads((home / "tiny" / "best" / "export.json").read_text())
    assert abs(validation.accuracy - exported["valid_acc"]) < 1e-9
    counts = validation.confusion()
    assert counts.sum() == len(validation.labels) and np.trace(counts) / counts.sum() == pytest.approx(
        validation.accuracy)
    accuracy, totals = validation.per_speaker()
    assert totals.sum() == len(validation.labels)
    assert np.nansum(accuracy * totals) == pytest.approx(np.trace(counts))
    assert f"{validation.accuracy:.2%} correct" in page and "Confusion matrix: the exported trial model" in page

    assert_all_rendered(report.html, tmp_path, plots=len(drawn))


def test_a_refit_logs_its_loss_and_learning_rate(refitted: Path) -> None:
    best = refitted / "tiny" / "best"
    steps = json.loads((best / "config.json").read_text())["refit"]["steps"]
    rows = [json.loads(line) for line in (best / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [25, 50, steps] and steps == 60  # every log_every steps, and the last
    for row in rows:
        assert np.isfinite(row["loss"]) and row["loss"] > 0 and row["lr"] >= 0 and 0 <= row["train_acc"] <= 1, row
    assert rows[0]["lr"] > rows[-1]["lr"]  # the schedule decays over the refit


@pytest.mark.slow
def test_report_of_a_refit_export_scores_the_source_trials_own_model_in_chromium(refitted: Path, cli: CliRunner,
                                                                                  tmp_path: Path) -> None:
    home, best = refitted, refitted / "tiny" / "best"
    source = json.loads((best / "export.json").read_text())["members"][0]["trial"]
    # the source trial's own weights, exported alone, re-measure their accuracy on the validation utterances
    code, _, stderr = run(cli, "export", "--study", "tiny", "--home", home, "--trial", source,
                          "--out", tmp_path / "own")
    assert code == 0, stderr
    own = json.loads((tmp_path / "own" / "export.json").read_text())["valid_acc"]
    out = tmp_path / "page"
    out.mkdir()

    code, stdout, stderr = run(cli, "report", "--study", "tiny", "--home", home, "--out", out / "report.html",
                               "--device", "cpu")

    assert code == 0, stderr
    assert f"with {len(FIGURES)} plots" in stdout and "note:" not in stdout, stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(["report.html", *(f"report-{n}.png" for n in FIGURES)])
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    page = html.unescape((out / "report.html").read_text(encoding="utf-8"))
    study = optuna.load_study(study_name="tiny", storage=open_storage(StudyHandle(home, "tiny").url, heartbeat=False))
    shown = evaluate_source(study, home, device=CPU)
    assert shown.held_out and shown.accuracy == pytest.approx(own)
    # the figures are the source trial's, on data it never saw, and say so; the refit trained on that data
    assert f"Confusion matrix: trial {source}'s own model" in page
    assert f"Accuracy per speaker: trial {source}'s own model" in page
    assert (f"trial {source}'s own model on the study's {len(shown.labels)} validation utterances, which it never "
            f"saw: {own:.2%} correct. The exported refit model ({best}) trained on them") in page
    # beside them, the refit's own training curve: what its metrics.jsonl logged
    curve = figure_json(page, "refit")
    assert "training loss" in curve and "learning rate" in curve and "training accuracy" in curve
    assert f"trial {source} refit, seed" in curve

    assert_all_rendered(out / "report.html", tmp_path, plots=len(FIGURES))


def test_report_without_an_export_says_so_and_shows_pruned_trials(isolated_home: Path, tmp_path: Path) -> None:
    study = make_study(isolated_home, "handmade", complete=3, pruned=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "r-confusion.png").write_bytes(b"an older report's figure")

    report = write_report(study, isolated_home, out / "r.html", device=CPU)

    drawn = [n for n in FIGURES if n not in ("confusion", "speakers", "refit")]
    assert report.figures == drawn
    assert len(report.notes) == 1 and "no exported model" in report.notes[0], report.notes
    assert sorted(p.name for p in out.iterdir()) == sorted(["r.html", *(f"r-{n}.png" for n in drawn)])
    page = report.html.read_text(encoding="utf-8")
    assert html.escape(report.notes[0]) in page
    curves = figure_json(page, "intermediate")
    assert '"name":"pruned here"' in curves and '"dash":"dot"' in curves  # the pruned trials stand apart
    assert "(3 complete, solid; 2 pruned, dotted" in page

    assert_all_rendered(report.html, tmp_path, plots=len(drawn))


def test_a_study_with_no_complete_trial_is_refused_and_nothing_is_written(isolated_home: Path,
                                                                         tmp_path: Path) -> None:
    study = make_study(isolated_home, "allpruned", complete=0, pruned=3)
    with pytest.raises(StudyError, match="'allpruned' has no complete trial"):
        write_report(study, isolated_home, tmp_path / "report.html", device=CPU)
    assert list(tmp_path.iterdir()) == []


def test_an_out_folder_that_does_not_exist_is_refused(isolated_home: Path, tmp_path: Path) -> None:
    study = make_study(isolated_home, "s")
    with pytest.raises(ConfigError, match="does not exist"):
        write_report(study, isolated_home, tmp_path / "missing" / "report.html", device=CPU)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ConfigError, match="is a folder"):
        write_report(study, isolated_home, tmp_path, device=CPU)


def test_a_failure_while_writing_leaves_the_previous_report_whole(isolated_home: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    study = make_study(isolated_home, "s")
    write_report(study, isolated_home, tmp_path / "report.html", device=CPU)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    saved: list[Path] = []

    def failing(figure: Any, path: Path) -> None:
        if saved:
            raise OSError("disk full")
        saved.append(path)
        path.write_bytes(b"half")

    monkeypatch.setattr("automel.report.page.save_png", failing)
    with pytest.raises(OSError, match="disk full"):
        write_report(study, isolated_home, tmp_path / "report.html", device=CPU)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary folder left either
