"""``automel search`` / ``export`` / ``studies`` / ``show`` end to end, with tiny budgets."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from typer.testing import CliRunner

from automel.engine.artifacts import artifact_store, has_weights
from automel.engine.handle import StudyHandle
from automel.engine.study import open_storage
from automel.model_folder import load_run
from automel.plugin import using_search_scale
from automel.score import score_submission
from automel.train.fit import open_workspace
from automel.train.loop import evaluate
from tests.conftest import run

# Small, fast plugins: the point here is the engine's behaviour, not model quality.
# --no-refit --quality fast: these tests are about the trials themselves, so the export is the best trial.
FAST = ["--encoders", "transformer", "--poolings", "mean,attentive-stats", "--heads", "softmax,am-softmax",
        "--device", "cpu", "--no-refit", "--quality", "fast"]


def load(home: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(StudyHandle(home, name).url, heartbeat=False))


def states(study: optuna.Study) -> dict[str, int]:
    counts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    return counts


def test_search_hw4_sample_prunes_resumes_and_exports(cli: CliRunner, hw4_sample: Path, hw4_answers: Path,
                                                     isolated_home: Path) -> None:
    args = ["search", "--data", hw4_sample, "--study", "hw4", "--steps-per-trial", 42, "--seed", 1, *FAST]
    code, stdout, stderr = run(cli, *args, "--trials", 10)
    assert code == 0, stderr
    study = load(isolated_home, "hw4")
    counts = states(study)
    assert counts.get("COMPLETE", 0) + counts.get("PRUNED", 0) == 10
    assert counts.get("PRUNED", 0) >= 1, counts
    assert "RUNNING" not in counts
    # every trial's parameters replay through FixedTrial into the same model parameters
    from automel.engine.space import SearchSpace, suggest_params

    space = SearchSpace.from_json(study.user_attrs["space"])
    assert study.user_attrs["scale"] == "cpu"
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        with using_search_scale("cpu"):
            replayed = suggest_params(optuna.trial.FixedTrial(trial.params), space)
        recorded = json.loads((isolated_home / "hw4" / "best" / "config.json").read_text())["params"]
        if trial.number == study.best_trial.number:
            assert {k: replayed[k] for k in recorded} == recorded
    # the automatic export: complete, and its submission is well above chance (10%)
    best_dir = isolated_home / "hw4" / "best"
    for name in ("model.safetensors", "config.json", "README.md", "output.csv"):
        assert (best_dir / name).is_file(), name
    assert score_submission(best_dir / "output.csv", hw4_answers).accuracy > 0.3
    card = (best_dir / "README.md").read_text()
    assert study.user_attrs["dataset_fingerprint"] in card and "optuna" in card
    # the export rebuilt from its files reproduces the trial's validation accuracy
    model, _ = load_run(best_dir)
    work = open_workspace(hw4_sample, isolated_home, split_record=study.user_attrs["split"])
    acc, _ = evaluate(model, work.store, work.split.valid, torch.device("cpu"))
    assert abs(acc - study.best_value) <= 1e-4
    # resume: the count grows to the new target; finished trials are untouched
    before = {t.number: (t.state, t.value, t.params) for t in study.get_trials(deepcopy=False)}
    code, _, stderr = run(cli, *args, "--trials", 12)
    assert code == 0, stderr
    study = load(isolated_home, "hw4")
    after = {t.number: (t.state, t.value, t.params) for t in study.get_trials(deepcopy=False)}
    assert {n: after[n] for n in before} == before
    assert sum(1 for s, _, _ in after.values() if s in (TrialState.COMPLETE, TrialState.PRUNED)) == 12
    # the same command again has nothing left to do
    code, _, _ = run(cli, *args, "--trials", 12)
    assert code == 0 and len(load(isolated_home, "hw4").trials) == len(after)
    # a different plugin set for the same study is a clear error, and the study is untouched
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--study", "hw4", "--trials", 13,
                          "--encoders", "conformer", "--device", "cpu")
    assert code == 2 and "hw4" in stderr and "space" in stderr
    assert len(load(isolated_home, "hw4").trials) == len(after)
    # looking at it
    code, stdout, _ = run(cli, "studies")
    assert code == 0 and "hw4" in stdout
    code, stdout, _ = run(cli, "show", "--study", "hw4")
    assert code == 0 and "Leaderboard" in stdout and "importances" in stdout
    # exporting a named trial elsewhere, and refusing to overwrite a folder
    number = study.best_trial.number
    out = isolated_home.parent / "exported"
    code, _, stderr = run(cli, "export", "--study", "hw4", "--trial", number, "--out", out)
    assert code == 0, stderr
    assert (out / "output.csv").read_text() == (best_dir / "output.csv").read_text()
    code, _, stderr = run(cli, "export", "--study", "hw4", "--trial", number, "--out", out)
    assert code == 2 and str(out) in stderr


def test_search_on_small_synthetic_corpus(cli: CliRunner, tmp_path: Path, isolated_home: Path) -> None:
    data = tmp_path / "syn"
    code, _, stderr = run(cli, "data", "synth", data, "--speakers", 6, "--utterances", 14, "--seed", 2,
                          "--test-per-speaker", 4)
    assert code == 0, stderr
    code, _, stderr = run(cli, "search", "--data", data, "--trials", 3, "--steps-per-trial", 80,
                               "--pruner", "none", "--sampler", "random", *FAST)
    assert code == 0, stderr
    names = [p.stem for p in isolated_home.glob("*.db")]
    assert len(names) == 1 and names[0].startswith("synthetic")
    study = load(isolated_home, names[0])
    assert states(study) == {"COMPLETE": 3}
    assert study.user_attrs["dataset"]["kind"] == "synthetic"
    best = isolated_home / names[0] / "best"
    assert score_submission(best / "output.csv", data / "answers.csv").accuracy > 1 / 6
    # only the best `keep` trials keep their weights
    code, _, _ = run(cli, "search", "--data", data, "--trials", 5, "--steps-per-trial", 80, "--pruner", "none",
                     "--sampler", "random", "--keep", 2, *FAST)
    assert code == 0
    study = load(isolated_home, names[0])
    store = artifact_store(isolated_home / names[0] / "artifacts")
    kept = [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if has_weights(store, t)]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best_two = sorted(complete, key=lambda t: -(t.value or 0))[:2]
    assert sorted(kept) == sorted(t.number for t in best_two)


@pytest.mark.parametrize(("args", "message"), [
    (["--sampler", "annealing"], "annealing"),
    (["--pruner", "sometimes"], "sometimes"),
    (["--encoders", "wavenet"], "wavenet"),
    (["--device", "cuda:3"], "cuda"),
])
def test_search_bad_options(cli: CliRunner, hw4_sample: Path, isolated_home: Path, args: list[str],
                            message: str) -> None:
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--trials", 1, "--steps-per-trial", 10, *args)
    assert code == 2 and message in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not list(isolated_home.glob("*.db"))  # nothing written for a refused command


def test_export_and_show_unknown_study(cli: CliRunner, isolated_home: Path) -> None:
    for command in ("export", "show"):
        code, _, stderr = run(cli, command, "--study", "nope")
        assert code == 2 and "nope" in stderr
