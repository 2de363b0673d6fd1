"""Shared studies: trials per hour with 1, 2 and 4 local workers, and the storage's cost per trial.

    .venv/bin/python bench/workers.py throughput [--trials 16] [--steps 100] [--workers 1,2,4]
    .venv/bin/python bench/workers.py storage [--trials 40] [--postgres postgresql+psycopg://…]

``throughput`` runs ``automel search --workers N`` as a user would and reports the wall time from the
command's start to its exit, process start-up and the final export included. Each worker count gets a
fresh study holding the same queued trials (tiny CPU Transformers drawn once with a fixed seed, on
hw4-sample, pruning off), so every run trains exactly the same models.

``storage`` isolates the storage: a trial that samples the full search space, reports four validations,
asks the pruner, records the user attributes a real trial records and beats its heartbeat, but trains
nothing. Milliseconds per trial, for SQLite (WAL), the journal file and PostgreSQL (pass ``--postgres``;
`tests/engine/conftest.py` shows how to start a throw-away server).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, SHARED_DATA, machine, report

TINY = ["--encoders", "transformer", "--poolings", "mean", "--heads", "softmax", "--pruner", "none",
        "--device", "cpu"]


def fixed_trials(count: int) -> list[dict[str, object]]:
    """``count`` parameter sets drawn once (seeded), so every worker count trains exactly the same trials."""
    import optuna

    from automel.engine.space import make_space, suggest_params
    from automel.plugin import using_search_scale

    space = make_space(["transformer"], ["mean"], ["softmax"])
    draws = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    params = []
    for _ in range(count):
        trial = draws.ask()
        with using_search_scale("cpu"):
            suggest_params(trial, space)
        params.append(dict(trial.params))
        draws.tell(trial, 0.0)
    return params


def throughput(args: argparse.Namespace) -> None:
    import optuna

    from automel.engine.search import SearchOptions, open_search

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = SHARED_DATA / "hw4-sample"
    trials = fixed_trials(args.trials)
    for workers in (int(n) for n in args.workers.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            options = SearchOptions(trials=args.trials, study="bench", steps_per_trial=args.steps, pruner="none",
                                    encoders=["transformer"], poolings=["mean"], heads=["softmax"], device="cpu")
            study = open_search(data, home, options).study  # the study, with the same queued trials each time
            for params in trials:
                study.enqueue_trial(params)
            # One worker uses every core; several divide them (automel does this for --workers N).
            env = {**os.environ, "OMP_NUM_THREADS": str(os.cpu_count() or 1) if workers == 1 else "1"}
            command = [sys.executable, "-m", "automel", "search", "--home", tmp, "--data", str(data), "--study",
                       "bench", "--trials", str(args.trials), "--steps-per-trial", str(args.steps),
                       "--workers", str(workers), *TINY]
            started = time.perf_counter()
            done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(done.stderr[-2000:])
            trained = sum(t.user_attrs.get("seconds", 0.0) for t in study.get_trials(deepcopy=False))
            report("workers.throughput", workers=workers, trials=args.trials, steps=args.steps,
                   seconds=round(seconds, 1), trials_per_hour=round(args.trials / seconds * 3600),
                   trial_seconds_sum=round(trained, 1), machine=machine())


def storage(args: argparse.Namespace) -> None:
    import optuna

    from automel.engine.space import make_space, suggest_params
    from automel.engine.study import make_pruner, open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = make_space(None, None, None)
    with tempfile.TemporaryDirectory() as tmp:
        urls = {"memory": None, "sqlite": f"sqlite:///{tmp}/s.db", "journal": f"journal:{tmp}/s.log"}
        if args.postgres:
            urls["postgresql"] = args.postgres
        for kind, url in urls.items():
            # The random sampler keeps the sampler's own cost out of the figure; "memory" is the baseline
            # (the same calls on Optuna's in-memory storage), so storage cost = figure - baseline.
            study = optuna.create_study(storage=open_storage(url) if url else None, direction="maximize",
                                        study_name=f"bench-{time.time_ns()}", pruner=make_pruner("median", 200),
                                        sampler=optuna.samplers.RandomSampler(seed=0))

            def objective(trial: optuna.Trial) -> float:
                suggest_params(trial, space)
                for step in (50, 100, 150, 200):
                    trial.report(0.5, step)
                    trial.should_prune()
                for key in ("seed", "worker", "steps", "seconds", "best_step", "artifact_weights", "artifact_config"):
                    trial.set_user_attr(key, 1)
                return 0.5

            study.optimize(objective, n_trials=3)  # warm: tables, connections, caches
            started = time.perf_counter()
            study.optimize(objective, n_trials=args.trials)
            ms = (time.perf_counter() - started) / args.trials * 1000
            report("workers.storage", storage=kind, trials=args.trials, ms_per_trial=round(ms, 1), machine=machine())


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("throughput")
    one.add_argument("--trials", type=int, default=16)
    one.add_argument("--steps", type=int, default=100)
    one.add_argument("--workers", default="1,2,4")
    two = sub.add_parser("storage")
    two.add_argument("--trials", type=int, default=40)
    two.add_argument("--postgres", default=None)
    args = parser.parse_args()
    {"throughput": throughput, "storage": storage}[args.command](args)


if __name__ == "__main__":
    main()
