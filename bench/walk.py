"""The walk of a study through ``finish_study``: which modules it enters, and how often it climbs back.

Issue 23 measures how far a reader has to follow a study after a search, in two ways, on a small study
(3 TDNN trials, then a 4-step refit of up to 2 members):

- ``study``: every call inside automel that receives the study (or its handle) as an argument is a stop
  (a property, such as the handle's paths, is read in place and is none);
- ``call_tree``: every automel function the call tree of ``finish_study`` reaches is a stop, in the order
  of its first call (comprehensions and lambdas left out).

For each: the stops, the modules entered, the times the walk returns to a module it had already left,
and how often it enters ``automel.train`` and ``automel.ensemble`` from outside.

    python bench/walk.py [--repo DIR]

``--repo`` measures another checkout of automel (for example the commit before a change), with this
checkout's virtual environment. It prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_TRACED = r'''
import inspect, json, sys
from pathlib import Path
import optuna, torch

home, study_name = Path(sys.argv[1]), sys.argv[2]
import automel.engine.finish as finish
study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{home / (study_name + '.db')}")
followed = {id(study)}
stops: list[str] = []  # calls that receive the study (or its handle)
tree: list[str] = []  # every automel function the call tree reaches, in order of its first call

seen: set[str] = set()

def profile(frame, event, arg):
    if event != "call":
        return
    module = frame.f_globals.get("__name__", "")
    if not module.startswith("automel"):
        return
    code = frame.f_code
    if f"{module}:{code.co_name}" not in seen:
        seen.add(f"{module}:{code.co_name}")
        tree.append(f"{module}:{code.co_name}")
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    values = [frame.f_locals.get(name) for name in names]
    if "self" in names and type(frame.f_locals.get("self")).__name__ == "StudyHandle":
        values.append(frame.f_locals["self"])
    owner = frame.f_locals.get("self") if "self" in names else None
    if owner is not None and isinstance(type(owner).__dict__.get(code.co_name), property):
        return  # a property (a path of the handle): read in place, not a stop of the walk
    for value in values:
        if id(value) in followed or type(value).__name__ == "StudyHandle" and value.name == study_name:
            followed.add(id(value))
            stops.append(f"{module}:{code.co_name}")
            return

params = inspect.signature(finish.finish_study).parameters
options = finish.FinishOptions(refit=True, ensemble_size=2, steps=4)
first = next(iter(params))
if first == "handle":
    from automel.engine.handle import StudyHandle
    target = StudyHandle(home, study_name)
    args = (target, study)
else:
    args = (study, home)
sys.setprofile(profile)
try:
    finish.finish_study(*args, options, torch.device("cpu"))
finally:
    sys.setprofile(None)
def walk(calls):
    modules = [call.split(":")[0] for call in calls]
    entered, returns, left, previous = [], 0, set(), None
    for module in modules:
        if module != previous:
            if module in left:
                returns += 1
            if previous is not None:
                left.add(previous)
            if module not in entered:
                entered.append(module)
        previous = module

    def entries(prefix):
        return sum(1 for a, b in zip([None] + modules, modules) if b.startswith(prefix)
                   and not (a or "").startswith(prefix))

    return {"stops": len(calls), "modules": len(entered), "returns": returns,
            "train_entries": entries("automel.train"), "ensemble_entries": entries("automel.ensemble")}

result = {"study": walk(stops), "call_tree": walk([c for c in tree if not c.endswith(">")])}
if len(sys.argv) > 3:
    result["study"]["path"] = stops
print(json.dumps(result))
'''


def _study(repo: Path, work: Path) -> tuple[Path, str]:
    env = {**os.environ, "PYTHONPATH": str(repo), "AUTOMEL_HOME": str(work / "home"), "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "automel"]
    subprocess.run([*cli, "data", "synth", str(work / "data"), "--speakers", "6", "--utterances", "6"],
                   check=True, env=env, capture_output=True, cwd=work)
    subprocess.run([*cli, "search", "--data", str(work / "data"), "--study", "walk", "--trials", "3",
                    "--steps-per-trial", "10", "--no-refit", "--encoders", "tdnn", "--seed", "0"],
                   check=True, env=env, capture_output=True, cwd=work)
    return work / "home", "walk"


def measure(repo: Path, path: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        home, name = _study(repo, Path(tmp))
        env = {**os.environ, "PYTHONPATH": str(repo), "AUTOMEL_HOME": str(home), "OMP_NUM_THREADS": "1"}
        done = subprocess.run([sys.executable, "-c", _TRACED, str(home), name, *(["path"] if path else [])],
                              check=True, env=env, cwd=tmp,
                              capture_output=True, text=True)
        return {"repo": str(repo), **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT)
    parser.add_argument("--path", action="store_true", help="also list the study's stops in order")
    args = parser.parse_args()
    print(json.dumps(measure(args.repo.resolve(), args.path)))


if __name__ == "__main__":
    main()
