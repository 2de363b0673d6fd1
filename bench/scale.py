"""The whole job from 64 to 600 speakers: wall seconds and peak RSS per phase, and how each grows (issue 24).

For each size (speakers x utterances per speaker) it generates the synthetic corpus (``automel data synth``,
the package's own HW4-like lengths), then runs, each in a fresh process measured by ``/usr/bin/time``:

1. ``cache``: the feature store's first build (:func:`automel.data.store.open_store`);
2. ``search``: ``automel search --time-limit T`` with every other default; its phases come from the budget
   record the study keeps (``search``, ``ensemble``, ``refit``, ``export``, ``other``), its trials' steps per
   second and validation share from their attributes, its accuracy from the export's ``output.csv`` scored
   against the corpus's answer key;
3. ``predict``: ``automel predict best --data`` over the test utterances;
4. ``report``: ``automel report`` (the confusion figure over every speaker).

Then each phase's seconds against the number of utterances gives a fitted exponent (log-log least squares):
1 is linear. One JSON line per size and one for the fit.

    .venv/bin/python bench/scale.py --sizes 64x40,150x40,300x40,600x40 --time-limit 3m
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import BENCH_HOME, machine, report

AUTOMEL = [sys.executable, "-m", "automel"]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run ``command`` under /usr/bin/time: wall seconds, peak RSS (MB) of its largest process, its stdout."""
    done = subprocess.run(["/usr/bin/time", "-f", "TIME %e %M", *command], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    line = next(x for x in done.stderr.splitlines()[::-1] if x.startswith("TIME "))
    _, seconds, kilobytes = line.split()
    return float(seconds), int(kilobytes) / 1024, done.stdout


def corpus(speakers: int, utterances: int, env: dict[str, str]) -> tuple[Path, float]:
    out = BENCH_HOME / "scale" / f"synth-{speakers}x{utterances}"
    if (out / "answers.csv").exists():
        return out, 0.0
    started = time.monotonic()
    subprocess.run([*AUTOMEL, "data", "synth", str(out), "--speakers", str(speakers), "--utterances",
                    str(utterances), "--seed", "0"], env=env, check=True, capture_output=True)
    return out, time.monotonic() - started


def study_figures(home: Path, name: str) -> dict[str, Any]:
    import optuna

    from automel.engine.handle import StudyHandle
    from automel.engine.record import BUDGET_LOG

    study = StudyHandle(home, name).load()
    budget = (study.user_attrs.get(BUDGET_LOG) or [{}])[-1]
    trials = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("train_seconds") is not None]
    speeds = [t.user_attrs["steps"] / max(t.user_attrs["train_seconds"], 1e-6) for t in trials
              if t.user_attrs.get("steps")]
    shares = [1 - t.user_attrs["train_seconds"] / max(t.user_attrs["seconds"], 1e-6) for t in trials
              if t.user_attrs.get("seconds")]
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {"phases_s": budget.get("phases_s", {}), "trials": len(states),
            "complete": states.count(optuna.trial.TrialState.COMPLETE),
            "steps_per_s": round(float(np.median(speeds)), 2) if speeds else None,
            "validation_share": round(float(np.mean(shares)), 3) if shares else None}


def measure(speakers: int, utterances: int, limit: str, env: dict[str, str]) -> dict[str, Any]:
    from automel.score import score_submission

    data, synth_s = corpus(speakers, utterances, env)
    home = BENCH_HOME / "scale" / f"home-{speakers}x{utterances}-{limit}"
    env = {**env, "AUTOMEL_HOME": str(home)}
    name = f"scale-{speakers}x{utterances}"
    cache_s, cache_mb, _ = timed([sys.executable, "-c", "import sys; from pathlib import Path; from automel.data.store "
                                  "import open_store; open_store(Path(sys.argv[1]), Path(sys.argv[2]))", str(data),
                                  str(home)], env)
    features = sum(p.stat().st_size for p in (home / "cache").rglob("features.bin"))
    search_s, search_mb, _ = timed([*AUTOMEL, "search", "--data", str(data), "--study", name, "--time-limit", limit,
                                    "--seed", "0"], env)
    best = home / name / "best"
    accuracy = score_submission(best / "output.csv", data / "answers.csv").accuracy
    predict_s, predict_mb, _ = timed([*AUTOMEL, "predict", str(best), "--data", str(data), "--out",
                                      str(home / "again.csv")], env)
    report_s, report_mb, _ = timed([*AUTOMEL, "report", "--study", name, "--out", str(home / "report.html")], env)
    return {"speakers": speakers, "utterances": speakers * utterances, "synth_s": round(synth_s, 1),
            "features_mb": round(features / 2**20, 1), "cache": {"s": cache_s, "peak_mb": round(cache_mb)},
            "search": {"s": search_s, "peak_mb": round(search_mb), **study_figures(home, name)},
            "predict": {"s": predict_s, "peak_mb": round(predict_mb)},
            "report": {"s": report_s, "peak_mb": round(report_mb)}, "test_accuracy": round(accuracy, 4),
            "chance": round(1 / speakers, 4)}


def exponents(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Each phase's seconds ~ utterances**k, k by least squares on the logs (phases that ran at every size)."""
    sizes = np.log([row["utterances"] for row in rows])
    series = {"cache": [row["cache"]["s"] for row in rows], "predict": [row["predict"]["s"] for row in rows],
              "report": [row["report"]["s"] for row in rows]}
    for phase in ("ensemble", "refit", "export"):
        values = [row["search"]["phases_s"].get(phase) for row in rows]
        if all(v for v in values):
            series[phase] = values
    return {phase: round(float(np.polyfit(sizes, np.log(np.maximum(v, 1e-3)), 1)[0]), 2)
            for phase, v in series.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64x40,150x40,300x40,600x40")
    parser.add_argument("--time-limit", default="3m")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(os.cpu_count() or 1))}
    rows = []
    for size in args.sizes.split(","):
        speakers, utterances = (int(x) for x in size.split("x"))
        rows.append(measure(speakers, utterances, args.time_limit, env))
        report("scale", machine=machine(), time_limit=args.time_limit, **rows[-1])
    if len(rows) > 1:
        report("scale-fit", exponents=exponents(rows))
    print(json.dumps({"sizes": args.sizes}), file=sys.stderr)


if __name__ == "__main__":
    main()
