"""Held-out robustness: train (or take) models on a fewshot.py set, score each on every test variant.

    .venv/bin/python bench/robustness.py DATA_ROOT --out OUT_DIR
        [--arm NAME=train:ARGS | --arm NAME=search:ARGS]... [--model [NAME=]EXPORT]...
        [--predict-args NAME=ARGS]... [--variants clean,channel,...] [--automel PATH]

``DATA_ROOT`` is a folder written by ``bench/fewshot.py`` (``clean/`` plus one HW4-layout set per test
variant, all with the same training features, test names and answers). Each ``--arm`` trains one model
on ``DATA_ROOT/clean`` with the repository's ``.venv/bin/automel`` as a subprocess:

- ``NAME=train:ARGS`` runs ``automel train ARGS --data DATA_ROOT/clean --home OUT_DIR/arms/NAME/home
  --out OUT_DIR/arms/NAME/run`` (e.g. ``tdnn=train:--config tdnn.json --steps 1500``); the export is the
  run directory;
- ``NAME=search:ARGS`` runs ``automel search ARGS --data ... --home ...`` (e.g.
  ``auto=search:--time-limit 15m``); the export is the ``<study>/best`` it leaves in that home.

ARGS are split like a shell command line and passed through unchanged, so new flags and config files
(``--config cfg.json`` with new ``train.*`` parameters, say) need nothing here; ``--data``, ``--home``
and train's ``--out`` are the runner's. ``--model [NAME=]EXPORT`` evaluates an existing run directory
or export without training. ``--predict-args NAME=ARGS`` adds ARGS to that arm's ``automel predict``
calls (``all=ARGS`` to every arm's), for mechanisms that act at prediction time.

Then, per arm and variant: ``automel predict EXPORT --data DATA_ROOT/VARIANT --out
OUT_DIR/arms/NAME/predictions/VARIANT.csv`` and ``automel score`` of it against
``DATA_ROOT/VARIANT/answers.csv`` (``--json`` when ``automel score`` has it, else its line
``accuracy A (C/T)``). The answer keys are read only by ``automel score``.

Writes ``OUT_DIR/robustness.md`` (one row per arm: the accuracy on every variant, each shifted one
with its ratio to clean, and the unweighted mean over the shifted variants) and
``OUT_DIR/robustness.json`` (every figure, the arms' commands, logs and times, the data set's
parameters, machine, command and date), and prints the table. A finished arm is reused when it is run
again with the same arguments on the same data (only the evaluation is redone); a folder of the same
name with other arguments is refused. Exits 2 with one line on a usage problem, 1 when an arm failed
(its row says so, its log is under ``OUT_DIR/arms/NAME/``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from fewshot import CLEAN, INFO, VARIANTS, noise_band

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_AUTOMEL = ROOT / ".venv" / "bin" / "automel"
KINDS = ("train", "search")
RESERVED = {"train": ("--data", "--home", "--out"), "search": ("--data", "--home")}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SCORE = re.compile(r"accuracy\s+([0-9.]+)\s+\((\d+)/(\d+)\)")


class UsageError(Exception):
    """A problem with the command line or the folders (exit 2, one line)."""


@dataclass
class Arm:
    name: str
    kind: str  # train | search | model
    args: list[str] = field(default_factory=list)
    export: Path | None = None  # given for a model arm, found after training otherwise
    predict_args: list[str] = field(default_factory=list)


# --- the command line ---------------------------------------------------------------------------------

def parse_arm(text: str) -> Arm:
    """``NAME=train:ARGS`` or ``NAME=search:ARGS``."""
    name, sep, rest = text.partition("=")
    kind, colon, args = rest.partition(":")
    if not sep or not colon or kind not in KINDS:
        raise UsageError(f"--arm '{text}': expected NAME=train:ARGS or NAME=search:ARGS")
    _check_name(name, "--arm")
    words = shlex.split(args)
    for flag in RESERVED[kind]:
        if any(w == flag or w.startswith(flag + "=") for w in words):
            raise UsageError(f"--arm {name}: {flag} is set by the runner; leave it out of ARGS")
    return Arm(name, kind, words)


def parse_model(text: str) -> Arm:
    """``NAME=EXPORT`` or ``EXPORT`` (named after its folder, or the study for ``<study>/best``)."""
    name, sep, path = text.partition("=")
    export = Path(path if sep else text)
    if not sep:
        name = export.resolve().parent.name if export.name == "best" else export.name
    _check_name(name, "--model")
    if not (export / "config.json").is_file() and not (export / "ensemble.json").is_file():
        raise UsageError(f"--model {text}: {export} is not a run directory or export "
                         "(no config.json or ensemble.json)")
    return Arm(name, "model", export=export.resolve())


def _check_name(name: str, option: str) -> None:
    if not _NAME.match(name):
        raise UsageError(f"{option}: '{name}' is not a usable arm name (letters, digits, '.', '_', '-')")


def data_variants(root: Path, wanted: str | None) -> list[str]:
    """The variants under ``root`` (``clean`` first, then fewshot.py's order), or the ``wanted`` ones."""
    present = [p.name for p in sorted(root.iterdir()) if (p / "metadata.json").is_file()
               and (p / "answers.csv").is_file()] if root.is_dir() else []
    if CLEAN not in present:
        raise UsageError(f"{root}: no {CLEAN}/ data set (build one with bench/fewshot.py)")
    if wanted:
        names = [CLEAN, *dict.fromkeys(v.strip() for v in wanted.split(",") if v.strip() and v.strip() != CLEAN)]
        absent = [n for n in names if n not in present]
        if absent:
            raise UsageError(f"{root}: no variant {', '.join(absent)} (present: {', '.join(present)})")
        return names

    def order(name: str) -> tuple[int, float, str]:
        band = noise_band(name)
        if band is not None:
            return (VARIANTS.index("noise-0-5"), band[0], name)
        return (VARIANTS.index(name) if name in VARIANTS else len(VARIANTS), 0.0, name)

    return sorted(present, key=order)


# --- running automel ----------------------------------------------------------------------------------

def run_logged(cmd: list[str], log: Path) -> tuple[int, float, str]:
    """Run ``cmd``, its output appended to ``log``; returns ``(rc, seconds, output)``."""
    started = time.monotonic()
    env = {**os.environ, "COLUMNS": "200"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    seconds = time.monotonic() - started
    output = proc.stdout + proc.stderr
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n{output}\n[rc {proc.returncode}, {seconds:.1f} s]\n\n")
    return proc.returncode, seconds, output


def train_arm(arm: Arm, automel: Path, clean: Path, arm_dir: Path) -> dict[str, Any]:
    """Train ``arm`` on ``clean``; returns its record (``export`` set when it worked)."""
    home = arm_dir / "home"
    cmd = [str(automel), arm.kind, *arm.args, "--data", str(clean), "--home", str(home)]
    if arm.kind == "train":
        cmd += ["--out", str(arm_dir / "run")]
    rc, seconds, output = run_logged(cmd, arm_dir / "train.log")
    record: dict[str, Any] = {"command": shlex.join(cmd), "rc": rc, "train_s": round(seconds, 1)}
    valid = re.findall(r"valid accuracy\s+([0-9.]+)%", output)
    if valid:
        record["valid_acc"] = float(valid[-1]) / 100
    if rc != 0:
        tail = [line for line in output.strip().splitlines() if line.strip()][-1:] or ["(no output)"]
        record["error"] = f"automel {arm.kind} exited {rc}: {tail[0][:300]}"
        return record
    if arm.kind == "train":
        export = arm_dir / "run"
    else:
        # export.json is in every export: one model (config.json) or an ensemble (ensemble.json)
        exports = sorted((p.parent for p in home.glob("*/best/export.json")), key=lambda p: p.stat().st_mtime)
        if not exports:
            record["error"] = f"automel search left no <study>/best export in {home}"
            return record
        export = exports[-1]
    record["export"] = str(export)
    return record


def score_has_json(automel: Path) -> bool:
    proc = subprocess.run([str(automel), "score", "--help"], capture_output=True, text=True, check=False,
                          env={**os.environ, "COLUMNS": "200"})
    return "--json" in proc.stdout


def evaluate(arm: Arm, automel: Path, root: Path, variants: list[str], arm_dir: Path, eval_home: Path,
             json_score: bool) -> dict[str, dict[str, Any]]:
    """Accuracy of ``arm.export`` on every variant's test set."""
    assert arm.export is not None
    predictions = arm_dir / "predictions"
    shutil.rmtree(predictions, ignore_errors=True)
    predictions.mkdir(parents=True)
    log = arm_dir / "eval.log"
    log.write_text("", encoding="utf-8")
    results: dict[str, dict[str, Any]] = {}
    for variant in variants:
        csv_path = predictions / f"{variant}.csv"
        rc, seconds, output = run_logged([str(automel), "predict", str(arm.export), "--data", str(root / variant),
                                          "--out", str(csv_path), "--home", str(eval_home), *arm.predict_args], log)
        if rc != 0:
            results[variant] = {"error": f"automel predict exited {rc}", "predict_s": round(seconds, 1)}
            continue
        score_cmd = [str(automel), "score", str(csv_path), str(root / variant / "answers.csv")]
        rc, _, output = run_logged(score_cmd + (["--json"] if json_score else []), log)
        parsed = _parse_score(output, json_score) if rc == 0 else None
        if parsed is None:
            results[variant] = {"error": f"automel score exited {rc} or printed no accuracy"}
            continue
        results[variant] = {**parsed, "predict_s": round(seconds, 1)}
    return results


def _parse_score(output: str, json_score: bool) -> dict[str, Any] | None:
    """``accuracy`` (from ``correct / total`` when given: the printed figure is rounded), ``correct``, ``total``."""
    parsed = _parse_score_output(output, json_score)
    if parsed is not None and parsed.get("total"):
        parsed["accuracy"] = parsed["correct"] / parsed["total"]
    return parsed


def _parse_score_output(output: str, json_score: bool) -> dict[str, Any] | None:
    if json_score:
        for line in reversed(output.strip().splitlines()):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and "accuracy" in data:
                return {k: data[k] for k in ("accuracy", "correct", "total") if k in data}
        start = output.find("{")
        try:
            data = json.loads(output[start:]) if start >= 0 else None
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and "accuracy" in data:
            return {k: data[k] for k in ("accuracy", "correct", "total") if k in data}
    match = _SCORE.search(output)
    if match is None:
        return None
    return {"accuracy": float(match.group(1)), "correct": int(match.group(2)), "total": int(match.group(3))}


# --- the report ---------------------------------------------------------------------------------------

def summarise(results: dict[str, dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """Ratios to clean and the mean over the shifted variants (those that were scored)."""
    clean = results.get(CLEAN, {}).get("accuracy")
    relative = {v: results[v]["accuracy"] / clean for v in variants[1:]
                if clean and "accuracy" in results.get(v, {})}
    shifted = [results[v]["accuracy"] for v in variants[1:] if "accuracy" in results.get(v, {})]
    summary: dict[str, Any] = {"relative": relative}
    if shifted and len(shifted) == len(variants) - 1:
        summary["mean_shifted"] = sum(shifted) / len(shifted)
        if clean:
            summary["mean_shifted_relative"] = summary["mean_shifted"] / clean
    return summary


def table(arms: list[dict[str, Any]], variants: list[str]) -> str:
    """Markdown: one row per arm, one column per variant, the ratio to clean in brackets."""
    head = ["arm", *variants, "mean shifted", "train s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    for arm in arms:
        results, summary = arm.get("results", {}), arm.get("summary", {})
        cells = [arm["name"]]
        for v in variants:
            r = results.get(v, {})
            if "accuracy" not in r:
                cells.append("failed" if arm.get("error") or r.get("error") else "–")
            elif v == CLEAN or v not in summary.get("relative", {}):
                cells.append(f"{r['accuracy']:.1%}")
            else:
                cells.append(f"{r['accuracy']:.1%} ({summary['relative'][v]:.2f})")
        if "mean_shifted" in summary:
            ratio = summary.get("mean_shifted_relative")
            cells.append(f"{summary['mean_shifted']:.1%}" + (f" ({ratio:.2f})" if ratio is not None else ""))
        else:
            cells.append("–")
        cells.append(f"{arm['train_s']:.0f}" if arm.get("train_s") is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
                            "python": platform.python_version()}
    for dist in ("torch", "automel"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[dist] = metadata.version(dist)
    if shutil.which("nvidia-smi"):
        proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
        info["gpus"] = proc.stdout.strip().splitlines()
    return info


# --- the whole run ------------------------------------------------------------------------------------

def prepare_arm(arm: Arm, arm_dir: Path, data_params: Any) -> dict[str, Any] | None:
    """The record of a finished earlier run of ``arm`` to reuse, or ``None`` (the folder is then fresh)."""
    record_path = arm_dir / "arm.json"
    wanted = {"kind": arm.kind, "args": arm.args, "data_params": data_params}
    if record_path.is_file():
        record = json.loads(record_path.read_text(encoding="utf-8"))
        if {k: record.get(k) for k in wanted} != wanted:
            raise UsageError(f"{arm_dir} holds arm '{arm.name}' trained with other arguments or data "
                             f"({record.get('kind')}: {shlex.join(record.get('args') or [])}); "
                             "rename the arm or remove that folder")
        if record.get("export") and Path(record["export"]).is_dir() and not record.get("error"):
            return record
    if arm_dir.exists():
        shutil.rmtree(arm_dir)  # an unfinished or failed earlier attempt of this very arm
    arm_dir.mkdir(parents=True)
    return None


def run(root: Path, out: Path, arms: list[Arm], variants: list[str], automel: Path) -> int:
    data_info_path = root / INFO
    data_info = json.loads(data_info_path.read_text(encoding="utf-8")) if data_info_path.is_file() else {}
    data_params = data_info.get("params")
    out.mkdir(parents=True, exist_ok=True)
    eval_home = out / "eval-home"
    json_score = score_has_json(automel)
    records: list[dict[str, Any]] = []
    failed = False
    for arm in arms:
        arm_dir = out / "arms" / arm.name
        record: dict[str, Any] = {"name": arm.name, "kind": arm.kind, "args": arm.args,
                                  "predict_args": arm.predict_args, "data_params": data_params}
        if arm.kind == "model":
            assert arm.export is not None
            arm_dir.mkdir(parents=True, exist_ok=True)
            record["export"] = str(arm.export)
        else:
            earlier = prepare_arm(arm, arm_dir, data_params)
            if earlier is not None:
                print(f"robustness: {arm.name}: reusing {earlier['export']} "
                      f"(trained in {earlier.get('train_s', 0):.0f} s)", flush=True)
                record.update({k: earlier[k] for k in ("command", "rc", "train_s", "valid_acc", "export")
                               if k in earlier}, reused=True)
            else:
                print(f"robustness: {arm.name}: automel {arm.kind} {shlex.join(arm.args)}", flush=True)
                record.update(train_arm(arm, automel, root / CLEAN, arm_dir))
                (arm_dir / "arm.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
            arm.export = Path(record["export"]) if record.get("export") else None
        if arm.export is not None:
            started = time.monotonic()
            record["results"] = evaluate(arm, automel, root, variants, arm_dir, eval_home, json_score)
            record["eval_s"] = round(time.monotonic() - started, 1)
            record["summary"] = summarise(record["results"], variants)
        failed |= bool(record.get("error")) or any("error" in r for r in record.get("results", {}).values())
        line = ", ".join(f"{v} {r['accuracy']:.1%}" for v, r in record.get("results", {}).items() if "accuracy" in r)
        print(f"robustness: {arm.name}: {record.get('error') or line}", flush=True)
        records.append(record)
    markdown = table(records, variants)
    counts = data_info.get("counts", {})
    note = (f"Data: {root} ({counts.get('speakers', '?')} speakers, {counts.get('train_chunks', '?')} training "
            f"and {counts.get('test_chunks', '?')} test chunks per variant). Cell: test accuracy (ratio to "
            f"clean); mean shifted: unweighted mean over the {len(variants) - 1} shifted variants.")
    (out / "robustness.md").write_text(f"{markdown}\n\n{note}\n", encoding="utf-8")
    report = {"bench": "robustness", "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": shlex.join([sys.executable, *sys.argv]), "machine": machine_info(),
              "data": {"root": str(root), "variants": variants, **{k: data_info.get(k) for k in ("params", "counts")}},
              "automel": str(automel), "score_json": json_score, "arms": records}
    (out / "robustness.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"\n{markdown}\n\n{note}\n\nwrote {out / 'robustness.md'} and {out / 'robustness.json'}", flush=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="a folder written by bench/fewshot.py")
    parser.add_argument("--out", type=Path, required=True, help="folder for the arms, the table and the JSON")
    parser.add_argument("--arm", action="append", default=[], metavar="NAME=KIND:ARGS",
                        help="train:ARGS or search:ARGS for automel (repeat for more arms)")
    parser.add_argument("--model", action="append", default=[], metavar="[NAME=]EXPORT",
                        help="an existing run directory or export to evaluate (repeat for more)")
    parser.add_argument("--predict-args", action="append", default=[], metavar="NAME=ARGS",
                        help="extra arguments of automel predict for arm NAME (all=ARGS: every arm)")
    parser.add_argument("--variants", default=None, help="comma-separated variants (default: all in ROOT)")
    parser.add_argument("--automel", type=Path, default=DEFAULT_AUTOMEL, help="the automel executable")
    args = parser.parse_args(argv)
    try:
        arms = [parse_arm(a) for a in args.arm] + [parse_model(m) for m in args.model]
        if not arms:
            raise UsageError("give at least one --arm or --model")
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise UsageError(f"arm names must differ: {', '.join(names)}")
        for text in args.predict_args:
            name, sep, extra = text.partition("=")
            if not sep or (name != "all" and name not in names):
                raise UsageError(f"--predict-args '{text}': expected NAME=ARGS with NAME an arm or 'all'")
            for arm in arms:
                if name in ("all", arm.name):
                    arm.predict_args += shlex.split(extra)
        if not args.automel.is_file():
            raise UsageError(f"{args.automel} not found (make install creates .venv/bin/automel)")
        variants = data_variants(args.root.resolve(), args.variants)
        code = run(args.root.resolve(), args.out.resolve(), arms, variants, args.automel)
    except UsageError as exc:
        print(f"robustness: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    raise SystemExit(code)


if __name__ == "__main__":
    main()
