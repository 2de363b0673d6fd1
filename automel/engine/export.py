"""Export a trial: weights, config.json (a run directory, so ``automel predict`` works), a model card and
``output.csv`` — written to a temporary folder and renamed, so a crash never leaves half an export."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from automel.adapt import ADAPTATION, DEFAULT_SEARCH_ADAPT, adapt_export
from automel.engine.artifacts import artifact_store, download_trial
from automel.engine.record import StudyRecord
from automel.engine.study import adopt_content_id, artifact_dir
from automel.errors import StudyError
from automel.exporting import describe, staged_exports
from automel.home import study_dir
from automel.model_folder import load_run
from automel.runs import versions, write_run_dir
from automel.train.device import autocast_dtype, select_device
from automel.train.loop import evaluate
from automel.train.run import Workspace, open_workspace, test_submission


def pick_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    if number is None:
        try:
            return study.best_trial
        except ValueError:
            from automel.engine.constraints import Constraints

            limits = Constraints.of_study(study)
            within = f" within its limits ({limits.describe()})" if limits.active else ""
            raise StudyError(f"study '{study.study_name}' has no completed trial{within} to export yet") from None
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise StudyError(f"study '{study.study_name}' has no trial {number}")
    if trials[number].state != TrialState.COMPLETE:
        raise StudyError(f"trial {number} is {trials[number].state.name}, not COMPLETE: nothing to export")
    return trials[number]


EXPORT_INFO = "export.json"


def export_best(study: optuna.Study, home: Path, data_root: Path | None = None) -> tuple[Path, FrozenTrial, bool]:
    """Export the best trial to ``<home>/<study>/best`` unless that folder already holds it.

    Safe when several workers finish at once: an exclusive lock serialises them, and whoever comes second
    finds the export done. Returns the folder, the trial and whether this call wrote it.
    """
    out = study_dir(home, study.study_name) / "best"  # a name that would leave the home is refused here
    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(out.parent / ".export.lock"):
        best = pick_trial(study, None)
        if _exported(out) == (study.study_name, best.number):
            return out, best, False
        path, _ = export_trial(study, home, best, out, replace=True, data_root=data_root, adapt=DEFAULT_SEARCH_ADAPT)
        return path, best, True


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, even if this process dies
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _exported(out: Path) -> tuple[str, int] | None:
    held = held_export(out)
    return (held.study, held.trial) if held is not None else None


@dataclass(frozen=True)
class HeldExport:
    """What an export folder holds, from its ``export.json``: whose, from which trial, and of what kind
    (``trial``: the trial's own weights, which can be exported again at will; ``refit`` or ``ensemble``:
    the result of retraining, which only an explicit request may replace)."""

    study: str
    trial: int
    kind: str
    members: tuple[int, ...] = ()

    @property
    def retrained(self) -> bool:
        return self.kind != "trial"

    def describe(self) -> str:
        if self.kind == "ensemble" and self.members:
            return f"the ensemble export of trials {', '.join(map(str, self.members))}"
        return f"the {self.kind} export of trial {self.trial}"


def held_export(out: Path) -> HeldExport | None:
    """What ``out`` holds (:class:`HeldExport`), or None when it holds no readable export."""
    try:
        info = json.loads((Path(out) / EXPORT_INFO).read_text(encoding="utf-8"))
        members = tuple(int(m["trial"]) for m in info.get("members") or () if isinstance(m, dict) and "trial" in m)
        return HeldExport(str(info["study"]), int(info["trial"]), str(info.get("kind", "trial")), members)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None


def add_formats(folder: Path, formats: Sequence[str]) -> dict[str, Path]:
    """Write the deployable ``formats`` of the export in ``folder`` beside its weights, which stay as they are.

    Adding a format never changes the model: ``model.safetensors``, ``config.json`` and ``export.json`` are
    only read. All formats or none are added (:func:`automel.exporting.export_model`).
    """
    from automel.exporting import export_model

    loaded, record = load_run(folder)
    return export_model(loaded, folder, formats, record.n_mels, what=f"{folder} ({describe(record.params)})")


def study_workspace(study: optuna.Study, home: Path, data_root: Path | None = None) -> Workspace:
    """The study's data set with its recorded split; refused if it is gone or its content changed."""
    saved = StudyRecord.read(study)
    root = data_root or Path(saved.dataset.root)
    if not root.is_dir():
        raise StudyError(f"the study's data set {root} is gone; pass --data to export against a copy")
    work = open_workspace(root, home, split_record=saved.split)
    adopt_content_id(study, work.store)
    if work.store.content_id != StudyRecord.read(study).content_id:
        raise StudyError(f"{root} has changed since the study ran (fingerprint differs); cannot export faithfully")
    return work


def export_trial(study: optuna.Study, home: Path, trial: FrozenTrial, out: Path, replace: bool = False,
                 data_root: Path | None = None, device: torch.device | None = None,
                 formats: Sequence[str] = (), adapt: str = "none") -> tuple[Path, float]:
    """Write the export of ``trial`` to ``out``; returns it and the re-measured validation accuracy.

    The model is scored and predicts on ``device`` (default: the best one here). ``formats`` (``onnx``,
    ``torchscript``) are written beside the weights (:mod:`automel.exporting`); a model that cannot take
    one is an :class:`~automel.errors.ExportError` and nothing is written. ``adapt`` is as in
    :func:`automel.adapt.adapt_export`.
    """
    device = device if device is not None else select_device("auto")
    store = artifact_store(artifact_dir(home, study.study_name))
    with tempfile.TemporaryDirectory() as tmp:
        model, record = load_run(download_trial(store, trial, Path(tmp)))
    work = study_workspace(study, home, data_root)
    valid_acc, _ = evaluate(model, work.store, work.split.valid, device, autocast_dtype(device, True))
    adaptation, predictor = adapt_export(model, record, work.store, adapt, home, device)
    info: dict[str, Any] = {"study": study.study_name, "trial": trial.number, "kind": "trial", "value": trial.value,
                            "valid_acc": valid_acc}
    if adaptation is not None:
        info[ADAPTATION] = adaptation
        record = dataclasses.replace(record, extra={**record.extra, ADAPTATION: adaptation})
    rows = test_submission(predictor, work.store, record.speakers, device) if work.store.dataset.test else None
    card = model_card(study, trial, record.to_json(), valid_acc)
    with staged_exports(model, formats, record.n_mels, Path(out).resolve().parent, describe(record.params)) as staged:
        path = write_run_dir(out, model.state_dict(), record, [], rows, card=card, replace=replace,
                             extra={EXPORT_INFO: json.dumps(info, indent=2)})
        staged.install(path)
    return path, valid_acc


def model_card(study: optuna.Study, trial: FrozenTrial, config: dict, valid_acc: float | None, kind: str = "trial",
               members: list[dict] | None = None) -> str:
    """The export's README.md: where the model comes from, what it scored, and what that score means."""
    dataset = config["dataset"]
    params = "\n".join(f"| `{k}` | `{v}` |" for k, v in sorted(config["params"].items()))
    synthetic = " — synthetic data, not real speech" if dataset.get("kind") == "synthetic" else ""
    chosen = config["params"]
    soft = {**versions()}
    return f"""# automel model: study `{study.study_name}`, {_what(kind, trial, members)}

- Data set: `{dataset.get('name')}` [{dataset.get('kind')}]{synthetic}, fingerprint `{dataset.get('fingerprint')}`
  ({dataset.get('speakers')} speakers, {dataset.get('train_utterances')} training and
  {dataset.get('test_utterances')} test utterances), from `{dataset.get('root')}`
- Model: encoder `{chosen['encoder']}`, pooling `{chosen['pooling']}`, head `{chosen['head']}`
{_scores(kind, trial, config, valid_acc, members)}
- Software: automel {soft['automel']}, torch {soft['torch']}, optuna {soft['optuna']}

`automel predict {{this folder}} --data DIR` writes a submission; `config.json` rebuilds the model.

## Parameters{' of the best member' if kind == 'ensemble' else ''}

| parameter | value |
| --- | --- |
{params}

## Training metrics

```json
{json.dumps(config.get('result', {}), indent=2)}
```
"""


def _what(kind: str, trial: FrozenTrial, members: list[dict] | None) -> str:
    if kind == "ensemble":
        return "ensemble of trials " + ", ".join(str(m["trial"]) for m in members or [])
    return f"trial {trial.number}" + (" refit on all labelled data" if kind == "refit" else "")


def _scores(kind: str, trial: FrozenTrial, config: dict, valid_acc: float | None, members: list[dict] | None) -> str:
    value = f"{trial.value:.4f}" if trial.value is not None else "none (it did not reach the last rung)"
    if kind == "trial":
        return (f"- Validation accuracy: {value} recorded by the trial, {valid_acc:.4f} re-measured from these files\n"
                f"- Training: {trial.user_attrs.get('steps')} steps "
                f"(best at step {trial.user_attrs.get('best_step')}),\n"
                f"  {trial.user_attrs.get('seconds')} s, seed {trial.user_attrs.get('seed')}")
    refit = config.get("refit", {})
    lines = [f"- Comes from trial {trial.number}, whose validation accuracy was {value}."]
    if refit:
        lines.append(f"- Refit on training + validation utterances ({refit.get('utterances')}) for "
                     f"{refit.get('steps')} steps: **this model has no held-out score**; the trial's validation "
                     f"accuracy is the estimate.")
    if kind == "ensemble":
        weights = ", ".join(f"trial {m['trial']}: {m['weight']:.2f}" for m in members or [])
        lines.append(f"- Ensemble (greedy selection on validation probabilities), weights {weights}.")
    return "\n".join(lines)
