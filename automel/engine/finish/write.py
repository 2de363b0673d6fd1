"""Step 3 after the search, and the only code that writes a study's export (``<study>/best``).

An export is a run directory (``model.safetensors``, ``config.json``; so ``automel predict`` works) or an
ensemble folder, with the model card ``README.md``, the submission ``output.csv``, ``export.json`` (whose
trials, of what kind, the ensemble's scores, the adaptation) and the deployable formats asked for.

- It is written to a temporary folder and renamed, so the previous export stays whole until the new one is
  complete; Ctrl-C or a crash leaves it, and every finished trial, untouched.
- The study's own export folder is written under an exclusive lock (``<study>/.export.lock``): never two
  writers at once, whether a search, a refit, ``automel export`` or several workers finishing together.
- :func:`write_export` writes what :func:`~automel.engine.finish.finish_study` chose and refit;
  :func:`export_trial` a trial's own weights; :func:`export_best` the best trial unless the folder already
  holds it; :func:`add_formats` only adds deployable files to an export, whose model it never changes.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial

from automel.adapt import ADAPTATION, DEFAULT_SEARCH_ADAPT, Adaptation, adapt_export
from automel.adapt import describe as describe_adaptation
from automel.engine.finish.card import model_card
from automel.engine.finish.parts import Part, parts_of
from automel.engine.finish.select import pick_trial, trial_weights
from automel.engine.handle import StudyHandle
from automel.exporting import describe, export_model, staged_exports
from automel.model_folder import load_run, write_run_dir
from automel.train.device import autocast_dtype, select_device
from automel.train.fit import Workspace, test_submission
from automel.train.loop import evaluate

EXPORT_INFO = "export.json"
KINDS = ("trial", "refit", "ensemble")


@dataclass
class Written:
    """An export as written: where, of what kind, and what ``export.json`` says of it."""

    path: Path
    kind: str  # "trial", "refit" or "ensemble"
    trial: int  # the trial export.json names: the study's best, or the member the export comes from
    valid_acc: float | None = None  # re-measured from the files (a trial's own weights only)
    members: list[dict[str, Any]] = field(default_factory=list)
    ensemble: dict[str, float] | None = None
    adaptation: dict[str, Any] | None = None


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


@contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``lock_path`` (created if missing) for the block."""
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file closes, even if this process dies
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _locked(handle: StudyHandle, out: Path) -> Any:
    """The study's export lock when ``out`` is the study's own export folder (another folder is the user's)."""
    if Path(out).resolve() != handle.best.resolve():
        return nullcontext()
    handle.folder.mkdir(parents=True, exist_ok=True)
    return exclusive(handle.export_lock)


def write_export(handle: StudyHandle, study: optuna.Study, work: Workspace, parts: list[Part], *, kind: str,
                 source: FrozenTrial, named: FrozenTrial | None = None, ensemble: dict[str, float] | None = None,
                 out: Path | None = None,
                 device: torch.device | None = None, formats: Sequence[str] = (), adapt: str = "none",
                 replace: bool = True) -> Written:
    """Write ``parts`` (one model, or an ensemble's members) as an export of ``kind`` that comes from trial
    ``source`` to ``out`` (default: the study's export folder, under its lock). ``export.json`` names trial
    ``named`` (default: ``source``).

    A ``trial`` export is re-scored on validation from the files' model. ``adapt`` is as in
    :func:`automel.adapt.adapt_export`; ``formats`` (``onnx``, ``torchscript``) are traced first, so a model
    that cannot take one is an :class:`~automel.errors.ExportError` and nothing is written. ``replace=False``
    refuses an existing ``out``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {KINDS}")
    target = Path(out) if out is not None else handle.best
    with _locked(handle, target):
        return _write(study, work, parts, kind, source, named or source, ensemble, target,
                      device or select_device("auto"), tuple(formats), adapt, replace, handle.home)


def _write(study: optuna.Study, work: Workspace, parts: list[Part], kind: str, source: FrozenTrial,
           named: FrozenTrial, ensemble: dict[str, float] | None, out: Path, device: torch.device,
           formats: tuple[str, ...], adapt: str, replace: bool, home: Path) -> Written:
    described = [p.info for p in parts]
    info: dict[str, Any] = {"study": study.study_name, "trial": named.number, "kind": kind, "value": named.value,
                            "members": described, "ensemble": ensemble}
    model = parts[0].model if len(parts) == 1 else _ensemble_model(parts)
    valid_acc = None
    if kind == "trial":  # the trial's own weights: re-measure what the study recorded, from the files' model
        valid_acc, _ = evaluate(model, work.store, work.split.valid, device, autocast_dtype(device, True))
        info["valid_acc"] = valid_acc
    adaptation, predictor = adapt_export(model, parts[0].record, work.store, adapt, home, device)
    if adaptation is not None:
        info[ADAPTATION] = adaptation
        parts = [dataclasses.replace(p, record=dataclasses.replace(
            p.record, extra={**p.record.extra, ADAPTATION: adaptation})) for p in parts]
    rows = test_submission(predictor, work.store, parts[0].record.speakers, device) if work.store.dataset.test else None
    card = model_card(study, source, parts[0].record.to_json(), valid_acc, kind=kind, members=described)
    if adaptation is not None:
        card += (f"\n## Adaptation\n\n{describe_adaptation(Adaptation(**adaptation))}. `automel predict` adapts "
                 f"again to the data it predicts when it was `test` (see `--adapt`).\n")
    extra = {EXPORT_INFO: json.dumps(info, indent=2, default=str)}
    what = describe(parts[0].record.params) if len(parts) == 1 else f"the ensemble of {len(parts)} models"
    # Deployable files first, into a temporary folder: a model that cannot take a format leaves the old export.
    with staged_exports(model, formats, parts[0].record.n_mels, out.resolve().parent, what) as staged:
        if len(parts) == 1:
            path = write_run_dir(out, parts[0].model.state_dict(), parts[0].record, parts[0].curve, rows, card=card,
                                 replace=replace, extra=extra)
        else:
            from automel.model_folder import write_ensemble_dir

            path = write_ensemble_dir(out, [(p.model.state_dict(), p.record, p.info) for p in parts],
                                      [p.info["weight"] for p in parts], rows, card=card, replace=replace,
                                      extra=extra, result=ensemble, metrics=[p.curve for p in parts])
        staged.install(path)
    return Written(path, kind, named.number, valid_acc, described, ensemble, adaptation)


def _ensemble_model(parts: list[Part]) -> torch.nn.Module:
    from automel.ensemble import EnsembleModel

    return EnsembleModel([p.model for p in parts], [p.info["weight"] for p in parts]).eval()


def export_trial(handle: StudyHandle, study: optuna.Study, trial: FrozenTrial, out: Path | None = None, *,
                 replace: bool = True, data_root: Path | None = None, device: torch.device | None = None,
                 formats: Sequence[str] = (), adapt: str = "none") -> Written:
    """Export ``trial``'s own weights to ``out`` (default: the study's export folder); its ``valid_acc`` is
    re-measured from the written model."""
    member = trial_weights(handle, trial)
    work = handle.workspace(study, data_root)
    return write_export(handle, study, work, parts_of([member], None), kind="trial", source=trial, out=out,
                        device=device, formats=formats, adapt=adapt, replace=replace)


def export_best(handle: StudyHandle, study: optuna.Study, data_root: Path | None = None
                ) -> tuple[Written | None, FrozenTrial]:
    """Export the best trial to the study's export folder unless that folder already holds it.

    Safe when several workers finish at once: the lock serialises them, and whoever comes second finds the
    export done (``None``). Returns what was written and the best trial.
    """
    handle.folder.mkdir(parents=True, exist_ok=True)
    with exclusive(handle.export_lock):
        best = pick_trial(study, None)
        held = held_export(handle.best)
        if held is not None and (held.study, held.trial) == (study.study_name, best.number):
            return None, best
        member = trial_weights(handle, best)
        work = handle.workspace(study, data_root)
        written = _write(study, work, parts_of([member], None), "trial", best, best, None, handle.best,
                         select_device("auto"), (), DEFAULT_SEARCH_ADAPT, True, handle.home)
        return written, best


def add_formats(folder: Path, formats: Sequence[str]) -> dict[str, Path]:
    """Write the deployable ``formats`` of the export in ``folder`` beside its weights, which stay as they are.

    Adding a format never changes the model: ``model.safetensors``, ``config.json`` and ``export.json`` are
    only read. All formats or none are added (:func:`automel.exporting.export_model`).
    """
    loaded, record = load_run(folder)
    return export_model(loaded, folder, formats, record.n_mels, what=f"{folder} ({describe(record.params)})")
