"""Size and latency limits (``--max-params``, ``--max-latency-ms``) and the accuracy × size Pareto front."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial
from typer.testing import CliRunner

from automel.engine.constraints import (
    Constraints,
    count_parameters,
    cpu_latency_ms,
    pareto_front,
    settle_constraints,
)
from automel.engine.handle import StudyHandle
from automel.engine.leaderboard import front_rows, leaderboard_rows
from automel.errors import ConfigError, StudyError
from automel.model_folder import load_run
from tests.conftest import run

FAST = ["--steps-per-trial", 20, "--encoders", "transformer", "--poolings", "mean", "--heads", "softmax",
        "--device", "cpu", "--pruner", "none", "--no-portfolio", "--no-refit", "--quality", "fast", "--seed", 3]


def _trial(number: int, value: float | None, size: int | None, state: TrialState = TrialState.COMPLETE) -> Any:
    attrs = {"n_params": size} if size is not None else {}
    trial = create_trial(state=state, value=value, params={"encoder": "x"},
                         distributions={"encoder": CategoricalDistribution(["x"])}, user_attrs=attrs)
    trial.number = number
    return trial


def test_the_front_keeps_the_trials_no_other_beats_on_accuracy_and_size() -> None:
    trials = [_trial(0, 0.80, 5000), _trial(1, 0.70, 1000), _trial(2, 0.75, 3000), _trial(3, 0.72, 4000),
              _trial(4, 0.90, 9000), _trial(5, 0.95, None), _trial(6, 0.70, 1000)]
    assert [t.number for t in pareto_front(trials)] == [1, 2, 0, 4]  # 3 is beaten by 2; 5 has no size; 6 ties 1


def test_leaderboard_marks_the_front_and_leaves_out_infeasible_trials(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    for trial in (_trial(0, 0.9, 9000), _trial(1, 0.5, 1000), _trial(2, 0.8, 8000)):
        study.add_trial(trial)
    over = _trial(3, 0.99, 500)
    over.system_attrs["constraints:n_params"] = 10.0  # recorded over its limit
    study.add_trial(over)
    rows = leaderboard_rows(study)
    assert [(r.trial, r.pareto, r.feasible) for r in rows] == [(3, False, False), (0, True, True), (2, True, True),
                                                               (1, True, True)]
    assert [r.trial for r in front_rows(study)] == [1, 2, 0]


@pytest.mark.parametrize(("limits", "words"), [
    ({"max_params": 0}, "`max_params` must be a positive number of parameters, got 0"),
    ({"max_latency_ms": 0.0}, "`max_latency_ms` must be a positive number of milliseconds, got 0.0"),
    ({"max_latency_ms": float("nan")}, "`max_latency_ms` must be a positive number"),
])
def test_limits_must_be_positive(limits: dict[str, Any], words: str) -> None:
    with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
        Constraints(**limits)


def test_a_study_keeps_the_limits_it_was_created_with() -> None:
    study = optuna.create_study(direction="maximize", study_name="limited")
    assert settle_constraints(study, Constraints(max_params=1000)) == Constraints(max_params=1000)
    assert settle_constraints(study, Constraints()) == Constraints(max_params=1000)  # a resume without options
    with pytest.raises(StudyError, match="created with at most 1,000 parameters, not at most 2,000 parameters"):
        settle_constraints(study, Constraints(max_params=2000))
    unlimited = optuna.create_study(direction="maximize", study_name="free")
    unlimited.add_trial(_trial(0, 0.5, 100))  # an older study: trials, and no record of limits
    with pytest.raises(StudyError, match="'free' was searched without size or latency limits"):
        settle_constraints(unlimited, Constraints(max_latency_ms=5.0))


def test_measuring_latency_leaves_the_model_and_the_random_stream_as_they_were() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(40, 16), torch.nn.Dropout(0.5))

    class Masked(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = model

        def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.body(x).mean(dim=1)

    wrapped = Masked().train()
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert cpu_latency_ms(wrapped, 40) > 0
    assert torch.equal(torch.rand(3), expected) and wrapped.training
    assert count_parameters(wrapped) == 40 * 16 + 16


def _sizes(home: Path, study: str) -> dict[int, tuple[str, int]]:
    loaded = StudyHandle.find(home, study, None).load()
    return {t.number: (t.state.name, t.user_attrs["n_params"]) for t in loaded.trials if "n_params" in t.user_attrs}


def test_max_params_prunes_larger_models_before_they_train_and_exports_one_within(cli: CliRunner,
                                                                                  hw4_sample: Path,
                                                                                  tmp_path: Path) -> None:
    # Without a limit, to learn the sizes this seed draws (each trial's draw depends on its number only).
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--study", "free", "--home", tmp_path,
                          "--trials", 5, *FAST)
    assert code == 0, stderr
    sizes = sorted({size for _, size in _sizes(tmp_path, "free").values()})
    assert len(sizes) >= 3, sizes
    limit = sizes[1]
    code, stdout, stderr = run(cli, "search", "--data", hw4_sample, "--study", "small", "--home", tmp_path,
                               "--trials", 5, "--max-params", limit, *FAST)
    assert code == 0, stderr
    study = StudyHandle.find(tmp_path, "small", None).load()
    over = [t for t in study.trials if t.user_attrs["n_params"] > limit]
    within = [t for t in study.trials if t.user_attrs["n_params"] <= limit]
    assert over and within
    for trial in over:  # pruned before a single step, with the reason, and infeasible for Optuna
        assert trial.state == TrialState.PRUNED and not trial.intermediate_values
        assert f"parameters > --max-params {limit:,}" in trial.user_attrs["pruned_reason"]
        assert trial.constraints == {"n_params": float(trial.user_attrs["n_params"] - limit)}
    assert all(t.state == TrialState.COMPLETE and t.constraints["n_params"] <= 0 for t in within)
    assert study.best_trial.user_attrs["n_params"] <= limit
    model, _ = load_run(tmp_path / "small" / "best")
    assert count_parameters(model) <= limit
    assert "over the limit" in stdout  # the plain line of each pruned trial says why
    # `show` gives every trial's size and whether it is on the front.
    code, stdout, _ = run(cli, "show", "--study", "small", "--home", tmp_path, "--format", "json")
    shown = {t["trial"]: t for t in json.loads(stdout)["trials"]}
    assert all(shown[t.number]["n_params"] == t.user_attrs["n_params"] for t in study.trials)
    assert {n for n, t in shown.items() if t["pareto"]} == {r.trial for r in front_rows(study)}


def test_export_pareto_lists_the_front_and_exports_only_its_members(cli: CliRunner, hw4_sample: Path,
                                                                   tmp_path: Path) -> None:
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--study", "s", "--home", tmp_path, "--trials", 4,
                          *FAST)
    assert code == 0, stderr
    study = StudyHandle.find(tmp_path, "s", None).load()
    front = [r.trial for r in front_rows(study)]
    code, stdout, stderr = run(cli, "export", "--study", "s", "--home", tmp_path, "--pareto")
    assert code == 0, stderr
    assert "Pareto front" in stdout and all(f"\n│ {n} " in stdout or f"\n{n} " in stdout for n in front), stdout
    off = [t.number for t in study.trials if t.state == TrialState.COMPLETE and t.number not in front]
    if off:
        code, _, stderr = run(cli, "export", "--study", "s", "--home", tmp_path, "--pareto", "--trial", off[0])
        assert code == 2 and f"trial {off[0]} is not on the Pareto front" in stderr
    out = tmp_path / "chosen"
    code, stdout, stderr = run(cli, "export", "--study", "s", "--home", tmp_path, "--pareto", "--trial", front[0],
                               "--out", out)
    assert code == 0, stderr
    assert json.loads((out / "config.json").read_text())["params"]["encoder"] == "transformer"


def test_limits_no_model_meets_end_in_one_line_and_keep_the_study(cli: CliRunner, hw4_sample: Path,
                                                                  tmp_path: Path) -> None:
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--study", "tiny", "--home", tmp_path,
                          "--trials", 2, "--max-latency-ms", "0.001", *FAST)
    assert code == 2
    assert stderr.strip().splitlines()[-1].startswith("error: study 'tiny' has no completed trial within its limits "
                                                      "(at most 0.001 ms per 3 s utterance on the CPU)")
    study = StudyHandle.find(tmp_path, "tiny", None).load()
    assert [t.state for t in study.trials] == [TrialState.PRUNED] * 2
    assert all(t.user_attrs["latency_ms"] > 0.001 for t in study.trials)
    assert not (tmp_path / "tiny" / "best").exists()
    # The same study under other limits is refused, naming both.
    code, _, stderr = run(cli, "search", "--data", hw4_sample, "--study", "tiny", "--home", tmp_path,
                          "--trials", 3, "--max-params", 10**9, *FAST)
    assert code == 2 and "created with at most 0.001 ms per 3 s utterance on the CPU, not at most" in stderr
