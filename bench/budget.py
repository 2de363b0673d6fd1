"""The budgeted search against its baselines at equal wall-clock time, side by side.

    AUTOMEL_BENCH_THREADS=2 .venv/bin/python bench/budget.py compare --data hw4-sample,librispeech \\
        --time-limit 3m [--home /tmp/automel-budget] [--arms search,baseline-b] [--device cpu]

For each data set (``synthetic``: the embedded default corpus; ``fewshot``: 256 synthetic speakers x 4
utterances, one held out each; ``librispeech`` and ``librispeech-shifted``: :mod:`realspeech`'s 2-4 s
chunks, clean and with the test chunks through another channel; ``hw4-sample``: the shared HW4 sample),
one after the other, each arm gets the same wall-clock time T:

- ``search``: ``automel search --time-limit T`` (all defaults);
- ``no-pruning``: the same with ``--pruner none``;
- ``baseline-a`` (the search before the budget): ``--steps-per-trial 200 --pruner median --no-refit
  --no-portfolio --quality fast``;
- ``baseline-b``: the ``boss`` preset trained for the whole of T: its seconds per step are measured here
  (:func:`automel.engine.budget.seconds_per_step`, 10 steps), then ``automel train --preset boss
  --steps N --valid-every N/4`` with ``N = (0.95 T - measuring time - --overhead-s) / seconds per step``
  (the train command's own start-up, validation and test prediction are not in the measured speed, so
  with ``--overhead-s 0`` these arms run over T; their line has ``train_wall_s`` to see by how much);
- ``baseline-c``: the first portfolio configuration, trained the same way (``--config``).

Every arm runs the real CLI (``.venv/bin/automel``) in a fresh process with its own fresh home under
``HOME/runs/<data>/<arm>`` (the data sets are generated once, into ``HOME/data``), ``OMP_NUM_THREADS`` =
``AUTOMEL_BENCH_THREADS`` (default 2) and ``COLUMNS=200``; each arm's output goes to
``HOME/logs/<data>-<arm>.log``. The submission is scored with ``automel score`` against the answer key
(read only to score). The wall time is measured around the subprocesses (for baselines b and c it
includes the speed measurement).

For the search arms the line also holds the export's kind (``export.json``), the best trial's
validation accuracy, the trials by state (``cut_by_time``: stopped by the time limit, recorded by
optuna as pruned; ``pruned``: by the pruner), the budget phases the search recorded, and the gains of the
finish kept apart: the best trial itself is exported (``automel export --trial N``) and scored (no
refit, no ensemble); for an ensemble, its largest-weight member is scored alone
(``automel predict .../member-k``). ``refit_gain`` = (that member, or the refit model) - the best trial;
``ensemble_gain`` = the ensemble - that member. Prints one JSON line per arm, then a Markdown table per
data set and the machine line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import ROOT, SHARED_DATA, default_corpus, machine, report

AUTOMEL = ROOT / ".venv" / "bin" / "automel"
DATASETS = ("synthetic", "fewshot", "librispeech", "librispeech-shifted", "hw4-sample")
ARMS = ("search", "no-pruning", "baseline-a", "baseline-b", "baseline-c")
SEARCH_ARGS: dict[str, list[str]] = {
    "search": [],
    "no-pruning": ["--pruner", "none"],
    "baseline-a": ["--steps-per-trial", "200", "--pruner", "median", "--no-refit", "--no-portfolio",
                   "--quality", "fast"],
}
STUDY = "budget"
TRAIN_SHARE = 0.95  # of T, for the training run of baselines b and c (the rest: start-up, test prediction)
THREADS = int(os.environ.get("AUTOMEL_BENCH_THREADS", "2"))
_ACCURACY = re.compile(r"accuracy\s+([0-9.]+)\s+\((\d+)/(\d+)\)")


class ArmFailed(RuntimeError):
    """A subprocess of an arm exited non-zero; the message names the command and the log."""


# --- running --------------------------------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS), "COLUMNS": "200"}
    env.pop("AUTOMEL_HOME", None)  # every command gets --home
    return env


def run(args: list[str], log: Path, capture: bool = False) -> tuple[float, str]:
    """Run ``automel ARGS``, appending its output to ``log``; ``(wall seconds, stdout if capture)``."""
    cmd = [str(AUTOMEL), *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        start = time.perf_counter()
        if capture:
            done = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
            fh.write(done.stdout + done.stderr)
        else:
            done = subprocess.run(cmd, env=_env(), stdout=fh, stderr=subprocess.STDOUT, text=True)
        seconds = time.perf_counter() - start
        fh.write(f"[exit {done.returncode} after {seconds:.1f} s]\n")
    if done.returncode != 0:
        said = [line.strip() for line in log.read_text(encoding="utf-8").splitlines() if line.startswith("error:")]
        why = f": {said[-1]}" if said else ""
        raise ArmFailed(f"`automel {args[0]}` exited {done.returncode}{why} (see {log})")
    return seconds, done.stdout if capture else ""


def score(submission: Path, answers: Path, log: Path) -> float:
    _, out = run(["score", str(submission), str(answers)], log, capture=True)
    match = _ACCURACY.search(out)
    if match is None:
        raise ArmFailed(f"`automel score` printed no accuracy (see {log})")
    return float(match.group(1))


def fresh_home(home: Path, data: str, arm: str) -> Path:
    where = home / "runs" / data / arm
    shutil.rmtree(where, ignore_errors=True)
    where.mkdir(parents=True)
    return where


# --- data sets ------------------------------------------------------------------------------------------

def dataset(name: str, home: Path) -> tuple[Path, Path]:
    """``(data folder, answer key)`` of data set ``name``, generated into ``home/data`` on first use."""
    cache = home / "data"
    if name == "synthetic":
        corpus = default_corpus()
        return corpus, corpus / "answers.csv"
    if name == "fewshot":
        out = cache / "fewshot"
        if not (out / "answers.csv").is_file():
            shutil.rmtree(out, ignore_errors=True)
            run(["data", "synth", str(out), "--speakers", "256", "--utterances", "4", "--seed", "1",
                 "--test-per-speaker", "1"], home / "logs" / "data-fewshot.log")
        return out, out / "answers.csv"
    if name in ("librispeech", "librispeech-shifted"):
        import realspeech

        if not realspeech.SOURCE.is_dir():
            raise SystemExit(f"budget: {realspeech.SOURCE} not found (the shared data must sit beside the repository)")
        path = realspeech.build(cache, seed=0, channel_shift=name == "librispeech-shifted")[name]
        return path, path / "answers.csv"
    if name == "hw4-sample":
        data, answers = SHARED_DATA / "hw4-sample", SHARED_DATA / "hw4-sample.answers.csv"
        if not data.is_dir() or not answers.is_file():
            raise SystemExit(f"budget: {data} or its answer key not found")
        return data, answers
    raise SystemExit(f"budget: unknown data set {name!r} (choose from {', '.join(DATASETS)})")


# --- arms -----------------------------------------------------------------------------------------------

def search_arm(arm: str, data: Path, answers: Path, limit: str, where: Path, log: Path,
               device: str) -> dict[str, Any]:
    """One ``automel search`` arm: its accuracy, the study's facts and the refit and ensemble gains."""
    import optuna

    wall, _ = run(["search", "--time-limit", limit, "--data", str(data), "--home", str(where), "--study", STUDY,
                   "--device", device, *SEARCH_ARGS[arm]], log)
    best = where / STUDY / "best"
    out: dict[str, Any] = {"test_acc": round(score(best / "output.csv", answers, log), 4), "wall_s": round(wall, 1)}
    info = json.loads((best / "export.json").read_text())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=STUDY, storage=f"sqlite:///{where / f'{STUDY}.db'}")
    states = [t.state.name for t in study.trials]
    complete = states.count("COMPLETE")
    cut = sum(1 for t in study.trials if t.state.name == "PRUNED"
              and "time limit" in str(t.user_attrs.get("pruned_reason", "")))
    runs = study.user_attrs.get("budget_runs") or [{}]
    out.update(export_kind=info["kind"], export_trial=info["trial"],
               members=[{k: m.get(k) for k in ("trial", "weight", "refit")} for m in info.get("members", [])],
               best_valid_acc=round(study.best_value, 4) if complete else None,
               complete=complete, pruned=states.count("PRUNED") - cut, cut_by_time=cut, failed=states.count("FAIL"),
               total_steps=sum(int(t.user_attrs.get("steps", 0)) for t in study.trials),
               phases_s=runs[-1].get("phases_s"))
    out.update(finish_gains(info, best, data, answers, where, log, device, out["test_acc"]))
    return out


def finish_gains(info: dict[str, Any], best: Path, data: Path, answers: Path, where: Path, log: Path,
                 device: str, export_acc: float) -> dict[str, Any]:
    """The best trial alone, the ensemble's main member alone, and the gains of refit and ensemble."""
    out: dict[str, Any] = {"trial_acc": None, "member_acc": None, "refit_gain": None, "ensemble_gain": None}
    trial_dir = where / f"trial-{info['trial']}"
    try:
        run(["export", "--study", STUDY, "--trial", str(info["trial"]), "--out", str(trial_dir),
             "--home", str(where)], log)
        out["trial_acc"] = round(score(trial_dir / "output.csv", answers, log), 4)
    except ArmFailed as exc:
        out["trial_export_error"] = str(exc)
    members = info.get("members") or []
    single = export_acc
    if info["kind"] == "ensemble":
        manifest = json.loads((best / "ensemble.json").read_text())["members"]
        top = max(manifest, key=lambda m: float(m["weight"]))
        member_csv = where / "member.csv"
        try:
            run(["predict", str(best / top["dir"]), "--data", str(data), "--out", str(member_csv),
                 "--device", device, "--home", str(where)], log)
            single = out["member_acc"] = round(score(member_csv, answers, log), 4)
            out["member"] = {"dir": top["dir"], "trial": top.get("trial"), "weight": round(float(top["weight"]), 3)}
            out["ensemble_gain"] = round(export_acc - single, 4)
        except ArmFailed as exc:
            out["member_error"] = str(exc)
            single = None
    refit = any(m.get("refit") for m in members)
    if refit and single is not None and out["trial_acc"] is not None:
        out["refit_gain"] = round(single - out["trial_acc"], 4)
    return out


def trained_arm(arm: str, data: Path, answers: Path, limit_s: float, where: Path, log: Path,
                device: str, overhead_s: float = 0.0) -> dict[str, Any]:
    """Baseline b (``boss``) or c (the first portfolio entry) trained for the whole time limit."""
    import torch

    from automel.engine.budget import seconds_per_step
    from automel.engine.portfolio import portfolio
    from automel.engine.space import make_space
    from automel.presets import preset_params
    from automel.registry import default_registry
    from automel.train.fit import open_workspace

    start = time.perf_counter()
    if arm == "baseline-b":
        params, what = preset_params("boss"), ["--preset", "boss"]
        label = "boss"
    else:
        registry = default_registry()
        params = portfolio(make_space(None, None, None), "cpu", registry)[0]
        config = where / "params.json"
        config.write_text(json.dumps(params, indent=2))
        what = ["--config", str(config)]
        label = "portfolio[0]: " + "/".join(str(params[k]) for k in ("encoder", "pooling", "head"))
    work = open_workspace(data, where)
    rate = seconds_per_step(params, work, torch.device(device))
    measure = time.perf_counter() - start
    steps = max(1, int((TRAIN_SHARE * limit_s - measure - overhead_s) / rate))
    run_dir = where / "run"
    wall, _ = run(["train", *what, "--data", str(data), "--steps", str(steps), "--valid-every",
                   str(max(1, steps // 4)), "--out", str(run_dir), "--device", device, "--home", str(where)], log)
    record = json.loads((run_dir / "config.json").read_text())
    valid = record.get("result", {}).get("valid_acc")
    return {"test_acc": round(score(run_dir / "output.csv", answers, log), 4), "wall_s": round(measure + wall, 1),
            "model": label, "steps": steps, "s_per_step": round(rate, 4), "measure_s": round(measure, 1),
            "train_wall_s": round(wall, 1), "valid_acc": round(valid, 4) if valid is not None else None}


# --- the table ------------------------------------------------------------------------------------------

def _signed(value: float | None) -> str:
    return "—" if value is None else f"{value:+.3f}"


def notes(arm: str, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"failed: {r['error']}"
    if arm in SEARCH_ARGS:
        kind = r["export_kind"]
        trials = sorted({m["trial"] for m in r["members"]})
        what = f"{kind} of trial{'s' if len(trials) > 1 else ''} {', '.join(map(str, trials))}"
        if kind == "ensemble" and len(trials) == 1:
            what += f" ({len(r['members'])} refit seeds)"
        valid = "—" if r["best_valid_acc"] is None else f"{r['best_valid_acc']:.3f}"
        counts = (f"{r['complete']} complete / {r['pruned']} pruned / {r['cut_by_time']} cut by time / "
                  f"{r['failed']} failed")
        parts = [what, counts,
                 f"best valid {valid} (trial {r['export_trial']})",
                 f"best trial alone {r['trial_acc'] if r['trial_acc'] is not None else '—'}",
                 f"refit {_signed(r['refit_gain'])}", f"ensemble {_signed(r['ensemble_gain'])}"]
        if r.get("member") and r["member"]["trial"] != r["export_trial"]:
            parts.append(f"top member is trial {r['member']['trial']}, not the best trial")
        return "; ".join(parts)
    return (f"{r['model']}, {r['steps']} steps at {r['s_per_step'] * 1000:.0f} ms/step "
            f"(measured in {r['measure_s']:.0f} s); valid {r['valid_acc']}")


def table(data: str, results: dict[str, dict[str, Any]], limit: str) -> str:
    reference = results.get("search", {}).get("test_acc")
    lines = [f"**{data}**, time limit {limit} per arm", "", "| arm | test acc | vs search | wall s | notes |",
             "| --- | --- | --- | --- | --- |"]
    for arm, r in results.items():
        acc = r.get("test_acc")
        ratio = f"{acc / reference:.2f}" if acc is not None and reference else "—"
        shown = "—" if acc is None else f"{acc:.4f}"
        wall = "—" if r.get("wall_s") is None else f"{r['wall_s']:.0f}"
        lines.append(f"| {arm} | {shown} | {ratio} | {wall} | {notes(arm, r)} |")
    return "\n".join(lines)


# --- main -----------------------------------------------------------------------------------------------

def compare(args: argparse.Namespace) -> None:
    import torch

    from automel.engine.budget import check_time_limit, parse_duration
    from automel.errors import ConfigError

    try:
        limit_s = parse_duration(args.time_limit)
        check_time_limit(limit_s)
    except ConfigError as exc:
        raise SystemExit(f"budget: {exc}") from None
    torch.set_num_threads(THREADS)  # the in-process speed measurement runs like the subprocesses
    names = [n.strip() for n in args.data.split(",") if n.strip()]
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    for bad in [n for n in names if n not in DATASETS] + [a for a in arms if a not in ARMS]:
        raise SystemExit(f"budget: unknown data set or arm {bad!r} (data: {', '.join(DATASETS)}; "
                         f"arms: {', '.join(ARMS)})")
    home: Path = args.home.resolve()
    tables = []
    for name in names:
        data, answers = dataset(name, home)
        results: dict[str, dict[str, Any]] = {}
        for arm in arms:
            where = fresh_home(home, name, arm)
            log = home / "logs" / f"{name}-{arm}.log"
            log.unlink(missing_ok=True)
            started = time.perf_counter()
            try:
                if arm in SEARCH_ARGS:
                    result = search_arm(arm, data, answers, args.time_limit, where, log, args.device)
                else:
                    result = trained_arm(arm, data, answers, limit_s, where, log, args.device, args.overhead_s)
            except Exception as exc:  # one broken arm must not cost the others
                result = {"test_acc": None, "wall_s": round(time.perf_counter() - started, 1),
                          "error": f"{type(exc).__name__}: {exc}"}
            results[arm] = result
            report("budget", data=name, arm=arm, time_limit=args.time_limit, time_limit_s=limit_s,
                   threads=THREADS, **result)
        tables.append(table(name, results, args.time_limit))
    print()
    print("\n\n".join(tables))
    print(f"\nMachine: {machine()}; OMP_NUM_THREADS={THREADS} per arm, one arm at a time.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("compare", help="every arm on every data set at the same wall-clock time")
    p.add_argument("--data", default="hw4-sample", help=f"comma-separated: {', '.join(DATASETS)}")
    p.add_argument("--time-limit", default="3m", help="per arm, as the CLI parses it: 90s, 3m, 1h or seconds")
    p.add_argument("--home", type=Path, default=Path("/tmp/automel-budget"),
                   help="data cache, one fresh home per arm, and the logs")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    p.add_argument("--device", default="cpu")
    p.add_argument("--overhead-s", type=float, default=0.0,
                   help="baselines b, c: seconds also set aside for the train command's start-up, validation "
                        "and test prediction [default 0: N = (0.95 T - measuring time) / seconds per step]")
    args = parser.parse_args()
    if not AUTOMEL.exists():
        raise SystemExit(f"budget: {AUTOMEL} not found; run `make install` first")
    if args.command == "compare":
        compare(args)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
