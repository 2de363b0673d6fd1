"""The ensemble's decision after a search, driven through ``automel refit``: it is weighed against the study's
best single trial by its objective (the leaderboard's first), named in the line, on the same probabilities.

Caruana's selection ranks by log-loss, so its first pick can be a trial that is not the study's best: the
comparison must not take that pick for "the best single trial". The members' validation probabilities are
set here (the trials of a 12-step search are too alike to show it on their own): the best trial by accuracy
is confidently wrong where it errs, the runner-up is less accurate but better calibrated, so the selection
picks the runner-up first.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from typer.testing import CliRunner

from automel.engine.artifacts import artifact_store, download_trial
from automel.engine.handle import StudyHandle
from automel.engine.study import open_storage
from automel.model_folder import load_run
from tests.conftest import HW4_SAMPLE, need, run

FAST = ["--encoders", "transformer", "--poolings", "mean,attentive-stats", "--heads", "softmax,am-softmax",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def searched_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three complete 12-step trials of distinct configurations, exported without a refit."""
    home = tmp_path_factory.mktemp("select")
    code, _, stderr = run(CliRunner(), "search", "--data", need(HW4_SAMPLE), "--study", "s", "--home", home,
                          "--trials", 3, "--steps-per-trial", 12, "--no-refit", "--no-portfolio", "--seed", 3,
                          "--pruner", "none", *FAST)
    assert code == 0, stderr
    return home


@pytest.fixture
def ranked(searched_home: Path, isolated_home: Path, cli: CliRunner) -> list[int]:
    """The study copied into this test's home; its trial numbers as the leaderboard ranks them, best first."""
    shutil.copytree(searched_home, isolated_home, dirs_exist_ok=True)
    code, stdout, stderr = run(cli, "show", "--study", "s", "--format", "json")
    assert code == 0, stderr
    rows = [r for r in json.loads(stdout)["trials"] if r["state"] == "COMPLETE"]
    assert len(rows) == 3, rows
    return [r["trial"] for r in sorted(rows, key=lambda r: r["rank"])]


def _fingerprint(model: torch.nn.Module) -> float:
    return sum(float(v.double().sum()) for v in model.state_dict().values())


def _trial_fingerprints(home: Path) -> dict[float, int]:
    """Each kept trial's weights, summed, -> its number: tells which trial a model handed to the selection is."""
    study = optuna.load_study(study_name="s", storage=open_storage(StudyHandle(home, "s").url, heartbeat=False))
    store = artifact_store(StudyHandle(home, "s").artifacts)
    found = {}
    for trial in study.get_trials(deepcopy=False):
        into = home / f"trial-{trial.number}"
        into.mkdir()
        found[_fingerprint(load_run(download_trial(store, trial, into))[0])] = trial.number
    return found


def _profile(labels: np.ndarray, right: np.ndarray, p_right: float, p_true_wrong: float, p_other: float,
             shift: int, classes: int) -> np.ndarray:
    """Probabilities ``(N, classes)``: ``p_right`` on the truth where ``right``, else ``p_true_wrong`` on it and
    ``p_other`` on speaker ``truth + shift``; the rest spread evenly."""
    out = np.empty((len(labels), classes), dtype=np.float32)
    for k, y in enumerate(labels):
        if right[k]:
            out[k] = (1 - p_right) / (classes - 1)
            out[k, y] = p_right
        else:
            out[k] = (1 - p_true_wrong - p_other) / (classes - 2)
            out[k, y], out[k, (y + shift) % classes] = p_true_wrong, p_other
    return out


def _set_probabilities(monkeypatch: pytest.MonkeyPatch, home: Path, ranked: list[int],
                       best_wrong: float) -> Callable[[], int]:
    """Replace the members' validation probabilities; return a function that gives the validation set's size.

    The study's best (``ranked[0]``) is right on all but the last third, and puts ``best_wrong`` on one wrong
    speaker where it errs; the runner-up is right on the last third and a few more, with modest confidence;
    the third is uniform.
    """
    import automel.ensemble as ensemble

    owner = _trial_fingerprints(home)
    seen: list[int] = []

    def fake(model: torch.nn.Module, store: object, indices: np.ndarray, device: torch.device,
             amp_dtype: object = None) -> np.ndarray:
        labels = store.labels.numpy()[indices]  # type: ignore[attr-defined]
        n, classes = len(labels), store.num_classes  # type: ignore[attr-defined]
        seen.append(n)
        position, third = np.arange(n), n // 3
        rank = ranked.index(owner[_fingerprint(model)])
        if rank == 0:
            return _profile(labels, position < n - third, 0.9, 0.001, best_wrong, 1, classes)
        if rank == 1:
            return _profile(labels, position >= n - third - 3, 0.6, 0.35, 0.4, 2, classes)
        return np.full((n, classes), 1 / classes, dtype=np.float32)

    monkeypatch.setattr(ensemble, "predict_proba", fake)
    return lambda: seen[0]


def test_an_ensemble_is_weighed_against_the_studys_best_trial_not_the_selections_first_pick(
        cli: CliRunner, ranked: list[int], isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    valid_size = _set_probabilities(monkeypatch, isolated_home, ranked, best_wrong=0.5)
    code, stdout, stderr = run(cli, "refit", "--study", "s", "--steps", 5, "--quality", "balanced", "--device", "cpu")
    assert code == 0, stderr
    n = valid_size()
    best, runner_up = ranked[0], ranked[1]
    single = (n - n // 3) / n  # the best trial's own accuracy on these probabilities, not the runner-up's
    # the selection's heaviest pick, the runner-up, comes first; the comparison names the study's best
    line = (f"ensemble of trials {runner_up}, {best}: valid accuracy 100.00% vs {single:.2%} for trial {best} "
            "(the study's best single trial)")
    assert line in " ".join(stdout.split()), stdout
    info = json.loads((isolated_home / "s" / "best" / "export.json").read_text())
    assert info["kind"] == "ensemble" and [m["trial"] for m in info["members"]] == [runner_up, best]
    assert info["ensemble"]["single_trial"] == best
    assert info["ensemble"]["single_valid_acc"] == pytest.approx(single)
    assert info["ensemble"]["ensemble_valid_acc"] == pytest.approx(1.0)


def test_no_ensemble_when_it_only_beats_the_selections_first_pick(
        cli: CliRunner, ranked: list[int], isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the best trial's errors are confident enough that the mix keeps them: the ensemble scores what the best
    # trial scores alone, though it beats the runner-up, the selection's first pick
    valid_size = _set_probabilities(monkeypatch, isolated_home, ranked, best_wrong=0.9)
    code, stdout, stderr = run(cli, "refit", "--study", "s", "--steps", 5, "--quality", "balanced", "--device", "cpu")
    assert code == 0, stderr
    n = valid_size()
    best = ranked[0]
    single = (n - n // 3) / n
    line = (f"no ensemble: it validates at {single:.2%}, no better than {single:.2%} for trial {best} (the study's "
            "best single trial), which goes alone")
    assert line in " ".join(stdout.split()), stdout
    info = json.loads((isolated_home / "s" / "best" / "export.json").read_text())
    assert info["kind"] == "refit" and [m["trial"] for m in info["members"]] == [best]
