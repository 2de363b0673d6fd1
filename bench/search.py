"""Search benchmarks, each through the real ``automel search`` command in a fresh process.

    .venv/bin/python bench/search.py default            # the README's search: --trials 50 on the synthetic default
    .venv/bin/python bench/search.py pruning --trials 20 # median pruning vs none, same trials and seed
    .venv/bin/python bench/search.py vs-simple --data DIR --answers FILE --trials 20

``vs-simple`` trains the ``simple`` preset for as many steps as the whole search spent, and scores both
against the answer key (read only to score).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import optuna
from _common import BENCH_HOME, default_corpus, machine, report

from automel.score import score_submission


def run_search(home: Path, *args: str, reuse_corpus: bool = True) -> tuple[float, optuna.Study]:
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    synthetic = BENCH_HOME / "synthetic"
    if reuse_corpus and synthetic.exists():  # reuse the generated default corpus, as a user's second search would
        shutil.copytree(synthetic, home / "synthetic")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "automel", "search", *args], check=True,
                   env={**os.environ, "AUTOMEL_HOME": str(home)}, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    db = next(home.glob("*.db"))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return seconds, optuna.load_study(study_name=db.stem, storage=f"sqlite:///{db}")


def summary(study: optuna.Study) -> dict[str, object]:
    states = [t.state.name for t in study.trials]
    return {"complete": states.count("COMPLETE"), "pruned": states.count("PRUNED"), "failed": states.count("FAIL"),
            "best_valid_acc": round(study.best_value, 4),
            "best": {k: study.best_params[k] for k in ("encoder", "pooling", "head")},
            "total_steps": sum(int(t.user_attrs.get("steps", 0)) for t in study.trials)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["default", "pruning", "vs-simple"])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--answers", type=Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = ["--data", str(args.data)] if args.data else []
    common = ["--trials", str(args.trials), "--seed", str(args.seed), *data]
    if args.mode == "default":
        # End to end from an empty home, as on a fresh clone: generating the corpus is part of the time.
        seconds, study = run_search(BENCH_HOME / "search-default", *common, reuse_corpus=False)
        report("search_default", machine=machine(), command="automel search " + " ".join(common),
               wall_s=round(seconds, 1), **summary(study))
    elif args.mode == "pruning":
        for pruner in ("median", "none"):
            seconds, study = run_search(BENCH_HOME / f"search-{pruner}", *common, "--pruner", pruner)
            report("search_pruning", machine=machine(), pruner=pruner, trials=args.trials, wall_s=round(seconds, 1),
                   **summary(study))
    else:
        home = BENCH_HOME / "search-vs-simple"
        seconds, study = run_search(home, *common)
        total = summary(study)["total_steps"]
        best = home / study.study_name / "best"
        run = home / "simple-run"
        subprocess.run([sys.executable, "-m", "automel", "train", "--preset", "simple", *data, "--steps", str(total),
                        "--valid-every", str(max(1, int(total) // 10)), "--out", str(run)], check=True,
                       env={**os.environ, "AUTOMEL_HOME": str(home)}, stdout=subprocess.DEVNULL)
        answers = args.answers or (args.data or default_corpus()) / "answers.csv"
        result = {"search_test_acc": round(score_submission(best / "output.csv", answers).accuracy, 4),
                      "simple_test_acc": round(score_submission(run / "output.csv", answers).accuracy, 4)}
        report("search_vs_simple", machine=machine(), data=str(args.data or "synthetic default"),
               search_wall_s=round(seconds, 1), **summary(study), **result)


if __name__ == "__main__":
    main()
