"""The per-trial reseeded sampler keeps the GP sampler's warm start (issue 13's leftover, issue 22)."""

from __future__ import annotations

import optuna

from automel.engine.study import GP_WARM_START, TrialSeededSampler


def test_the_gp_kernel_fit_is_handed_to_the_next_trial_s_sampler() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = TrialSeededSampler("gp", seed=3)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(lambda t: -(t.suggest_float("x", -2, 2) - 0.5) ** 2 - t.suggest_float("y", 0, 1), n_trials=14)
    fitted = getattr(sampler._inner, GP_WARM_START[0])
    assert fitted is not None  # GPSampler fitted its kernel after its start-up trials
    study.ask()  # the next trial rebuilds the inner sampler from its own seed
    assert getattr(sampler._inner, GP_WARM_START[0]) is fitted


def test_a_sampler_without_a_warm_start_is_rebuilt_as_before() -> None:
    sampler = TrialSeededSampler("tpe", seed=1)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    assert not any(hasattr(sampler._inner, name) for name in GP_WARM_START)
