"""Which model the report scores on the study's validation utterances, and its figures.

A trial export (or an ensemble of trial models) is scored as it is. A refit export trained on those very
utterances, so scoring it there draws a perfect diagonal that says nothing: the report scores the source
trial's own weights, kept in the study, on them instead (data they never saw), names that model on every
figure, and draws the refit's own training curve beside (:mod:`automel.report.refit`).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

from automel.engine.handle import StudyHandle
from automel.errors import AutomelError, StudyError
from automel.report.common import Section
from automel.report.confusion import confusion_section, per_speaker_section
from automel.report.refit import refit_sections

if TYPE_CHECKING:
    import torch

    from automel.model_config import ModelConfig
    from automel.train.fit import Workspace


@dataclass(frozen=True)
class Validation:
    """A model's predictions on the study's validation utterances: the export's, or its source trials' own."""

    folder: Path
    kind: str  # "trial", "refit" or "ensemble" (export.json)
    held_out: bool  # False when the model was refit on training + validation utterances
    speakers: tuple[str, ...]
    labels: np.ndarray
    predictions: np.ndarray
    model: str = "the exported model"  # which model made the predictions, as the figures name it

    @property
    def caption(self) -> str:
        """The model and its score in a few words (the PNGs' title): whether it saw these utterances."""
        seen = "it never saw" if self.held_out else "it trained on"
        return f"{self.model}: {self.accuracy:.1%} of {len(self.labels)} validation utterances {seen}"

    @property
    def accuracy(self) -> float:
        """The share of validation utterances predicted right (0 without any)."""
        return float((self.labels == self.predictions).mean()) if len(self.labels) else 0.0

    def confusion(self) -> np.ndarray:
        """Counts ``(true speaker, predicted speaker)``."""
        n = len(self.speakers)
        counts = np.zeros((n, n), dtype=np.int64)
        np.add.at(counts, (self.labels, self.predictions), 1)
        return counts

    def per_speaker(self) -> tuple[np.ndarray, np.ndarray]:
        """Each speaker's accuracy (NaN without validation utterances) and number of validation utterances."""
        counts = self.confusion()
        totals = counts.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals > 0, np.diag(counts) / totals, np.nan), totals


def _export_info(folder: Path) -> dict[str, Any]:
    """The export's ``export.json`` (what it holds), or ``{}`` when it has none or it cannot be read."""
    from automel.engine.finish.write import EXPORT_INFO

    try:
        info = json.loads((folder / EXPORT_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def is_refit(info: dict[str, Any]) -> bool:
    """Whether an export (its ``export.json``) holds a model refit on the validation utterances."""
    members = [m for m in info.get("members") or [] if isinstance(m, dict)]
    return any(m.get("refit") for m in members) if members else info.get("kind") == "refit"


def _export_folder(study: optuna.Study, home: Path) -> Path:
    folder = StudyHandle.of(study, home).best
    if not folder.is_dir():
        raise StudyError(f"there is no exported model in {folder} yet (`automel export` writes it)")
    return folder


def _validation_workspace(study: optuna.Study, home: Path, data_root: Path | None) -> Workspace:
    work = StudyHandle.of(study, home).workspace(study, data_root)
    if len(work.split.valid) == 0:
        raise StudyError(f"study '{study.study_name}' holds no validation utterances")
    return work


def _predict(model: torch.nn.Module, record: ModelConfig, work: Workspace, device: torch.device | None,
             what: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    """``(speakers, labels, predictions)`` of ``model`` on the validation utterances of ``work``."""
    from automel.train.device import autocast_dtype, select_device
    from automel.train.loop import predict

    if tuple(record.speakers) != tuple(work.store.dataset.speakers):
        raise StudyError(f"{what} was trained on other speakers than the study's data set")
    device = device if device is not None else select_device("auto")
    predictions = predict(model, work.store, work.split.valid, device, autocast_dtype(device, True))
    labels = work.store.labels.numpy()[work.split.valid].astype(np.int64)
    return tuple(record.speakers), labels, predictions


def evaluate_export(study: optuna.Study, home: Path, data_root: Path | None = None,
                    device: torch.device | None = None) -> Validation:
    """The predictions of ``<home>/<study>/best`` itself on the study's validation utterances.

    :class:`StudyError` when there is no export or no validation utterance, or the data set is gone or changed;
    :class:`ConfigError` when the export's files cannot be read.
    """
    from automel.model_folder import load_run

    folder = _export_folder(study, home)
    info = _export_info(folder)
    model, record = load_run(folder)
    work = _validation_workspace(study, home, data_root)
    kind = str(info.get("kind", "trial"))
    speakers, labels, predictions = _predict(model, record, work, device, f"the export in {folder}")
    return Validation(folder, kind, not is_refit(info), speakers, labels, predictions, f"the exported {kind} model")


def source_trials(info: dict[str, Any]) -> dict[int, float]:
    """Trial number -> weight of the trials an export was made from (a member's seeds add up)."""
    weights: dict[int, float] = {}
    for member in info.get("members") or []:
        if isinstance(member, dict) and isinstance(member.get("trial"), int):
            weight = member.get("weight", 1.0)
            weights[member["trial"]] = weights.get(member["trial"], 0.0) + float(weight or 0.0)
    if not weights and isinstance(info.get("trial"), int):
        weights[info["trial"]] = 1.0
    return weights


def evaluate_source(study: optuna.Study, home: Path, data_root: Path | None = None,
                    device: torch.device | None = None) -> Validation:
    """The predictions, on the study's validation utterances, of the trials' own models that the export was made
    from: for a refit export, data they never saw (the refit trained on it). Several trials are weighted as in the
    export. :class:`StudyError` when a source trial's weights were not kept, or as :func:`evaluate_export`.
    """
    from automel.ensemble import EnsembleModel

    folder = _export_folder(study, home)
    info = _export_info(folder)
    weights = source_trials(info)
    if not weights or sum(weights.values()) <= 0:
        raise StudyError(f"the export in {folder} names no trial it was made from")
    work = _validation_workspace(study, home, data_root)
    loaded = _trial_models(study, home, list(weights))
    numbers = ", ".join(str(n) for n in weights)
    if len(loaded) == 1:
        model, record = loaded[0]
        what = f"trial {numbers}'s own model"
    else:
        model = EnsembleModel([m for m, _ in loaded], [w / sum(weights.values()) for w in weights.values()]).eval()
        record = loaded[0][1]
        what = f"the own models of trials {numbers}, weighted as in the export"
    speakers, labels, predictions = _predict(model, record, work, device, what)
    return Validation(folder, str(info.get("kind", "trial")), True, speakers, labels, predictions, what)


def _trial_models(study: optuna.Study, home: Path, numbers: list[int]) -> list[tuple[torch.nn.Module, ModelConfig]]:
    """The kept weights of trials ``numbers`` (from the study's artifact store), loaded."""
    from automel.engine.artifacts import artifact_store, download_trial
    from automel.model_folder import load_run

    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    store = artifact_store(StudyHandle.of(study, home).artifacts)
    loaded = []
    with tempfile.TemporaryDirectory() as tmp:
        for number in numbers:
            if number not in trials:
                raise StudyError(f"trial {number}, which the export was made from, is not in study "
                                 f"'{study.study_name}'")
            into = Path(tmp) / str(number)
            into.mkdir()
            loaded.append(load_run(download_trial(store, trials[number], into)))
    return loaded


def _shown(study: optuna.Study, home: Path, data_root: Path | None, device: torch.device | None, curve: bool
           ) -> tuple[Validation, str]:
    """The validation figures' model and the sentence that says what they show (``curve``: the refit's training
    curve follows them)."""
    folder = _export_folder(study, home)
    if not is_refit(_export_info(folder)):
        validation = evaluate_export(study, home, data_root, device)
        return validation, (f"{validation.model} ({folder}) on the study's {len(validation.labels)} validation "
                            f"utterances: {validation.accuracy:.2%} correct")
    validation = evaluate_source(study, home, data_root, device)
    one = validation.model.startswith("trial ")
    return validation, (f"{validation.model} on the study's {len(validation.labels)} validation utterances, which "
                        f"{'it' if one else 'they'} never saw: {validation.accuracy:.2%} correct. The exported "
                        f"refit model ({folder}) trained on them, so they cannot score it"
                        + ("; its own training curve follows" if curve else ""))


def model_sections(study: optuna.Study, home: Path, data_root: Path | None = None,
                   device: torch.device | None = None) -> list[Section]:
    """The confusion matrix (or most-confused pairs) and per-speaker accuracy on validation, of the export or, for
    a refit export, of its source trials' own models; then the refit's training curve. Sentences instead of
    figures when they cannot be drawn (no export yet, data set gone, source weights not kept)."""
    folder = StudyHandle.of(study, home).best
    refit = refit_sections(folder)
    try:
        validation, where = _shown(study, home, data_root, device, any(s.plotly is not None for s in refit))
    except AutomelError as exc:
        why = f"The exported model cannot be shown: {exc}."
        if folder.is_dir() and is_refit(_export_info(folder)):
            why = (f"The export was refit on the validation utterances, so it cannot be scored on them, and the "
                   f"model it was refit from cannot be shown instead: {exc}.")
        sections = [Section("confusion", "Confusion matrix", why), Section("speakers", "Accuracy per speaker", why)]
    else:
        sections = [confusion_section(validation, where), per_speaker_section(validation, where)]
    return sections + refit
