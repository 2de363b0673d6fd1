"""The exported model on the study's validation utterances: its confusion matrix and per-speaker accuracy."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import optuna

from automel.errors import AutomelError, StudyError
from automel.home import study_dir
from automel.report.common import BLUE, METRIC, NAMED_SPEAKERS, Section, label_axes, png_figure

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Validation:
    """The exported model's predictions on the study's validation utterances."""

    folder: Path
    kind: str  # "trial", "refit" or "ensemble" (export.json)
    held_out: bool  # False when the model was refit on training + validation utterances
    speakers: tuple[str, ...]
    labels: np.ndarray
    predictions: np.ndarray

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


def evaluate_export(study: optuna.Study, home: Path, data_root: Path | None = None,
                    device: torch.device | None = None) -> Validation:
    """The predictions of ``<home>/<study>/best`` on the study's validation utterances.

    :class:`StudyError` when there is no export or no validation utterance, or the data set is gone or changed;
    :class:`ConfigError` when the export's files cannot be read.
    """
    from automel.engine.export import EXPORT_INFO, study_workspace
    from automel.runs import load_run
    from automel.train.device import autocast_dtype, select_device
    from automel.train.loop import predict

    folder = study_dir(home, study.study_name) / "best"
    if not folder.is_dir():
        raise StudyError(f"there is no exported model in {folder} yet (`automel export` writes it)")
    try:
        info = json.loads((folder / EXPORT_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    model, record = load_run(folder)
    work = study_workspace(study, home, data_root)
    if len(work.split.valid) == 0:
        raise StudyError(f"study '{study.study_name}' holds no validation utterances")
    if tuple(record.speakers) != tuple(work.store.dataset.speakers):
        raise StudyError(f"the export in {folder} was trained on other speakers than the study's data set")
    device = device if device is not None else select_device("auto")
    predictions = predict(model, work.store, work.split.valid, device, autocast_dtype(device, True))
    labels = work.store.labels.numpy()[work.split.valid]
    members = info.get("members") or []
    refit = info.get("kind") == "refit" or any(m.get("refit") for m in members if isinstance(m, dict))
    return Validation(folder, str(info.get("kind", "trial")), not refit, tuple(record.speakers),
                      labels.astype(np.int64), predictions)


def model_sections(study: optuna.Study, home: Path, data_root: Path | None = None,
                   device: torch.device | None = None) -> list[Section]:
    """The exported model's confusion matrix and per-speaker accuracy; sentences instead when it cannot be
    evaluated (no export yet, data set gone)."""
    try:
        validation = evaluate_export(study, home, data_root, device)
    except AutomelError as exc:
        why = f"The exported model cannot be shown: {exc}."
        return [Section("confusion", "Confusion matrix", why), Section("speakers", "Accuracy per speaker", why)]
    where = (f"the exported {validation.kind} model ({validation.folder}) on the study's "
             f"{len(validation.labels)} validation utterances: {validation.accuracy:.2%} correct")
    if not validation.held_out:
        where += (". This model was refit on training and validation utterances, so these are not held out: "
                  "they show what it learned, not how it does on new speech")
    return [_confusion(validation, where), _per_speaker(validation, where)]


def _confusion(validation: Validation, where: str) -> Section:
    """A heatmap of utterances by true and predicted speaker."""
    import plotly.graph_objects as go

    counts = validation.confusion()
    names = list(validation.speakers)
    n = len(names)
    fig = go.Figure(go.Heatmap(z=counts, x=names, y=names, colorscale="Blues",
                               hovertemplate="true %{y}, predicted %{x}: %{z}<extra></extra>"))
    size = min(900, max(420, 16 * n + 160))
    fig.update_layout(height=size, xaxis={"title": "predicted speaker", "type": "category",
                                          "showticklabels": n <= NAMED_SPEAKERS},
                      yaxis={"title": "true speaker", "type": "category", "autorange": "reversed",
                             "showticklabels": n <= NAMED_SPEAKERS})
    png = png_figure(8, 7)
    ax = png.add_subplot()
    image = ax.imshow(counts, cmap="Blues", interpolation="nearest")
    png.colorbar(image, ax=ax, label="utterances")
    if n <= NAMED_SPEAKERS:
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("predicted speaker")
    ax.set_ylabel("true speaker")
    return Section("confusion", "Confusion matrix", f"Utterances by true and predicted speaker, for {where}.", fig, png)


def _per_speaker(validation: Validation, where: str) -> Section:
    """Each speaker's accuracy as a bar, worst first."""
    import plotly.graph_objects as go

    accuracy, totals = validation.per_speaker()
    order = [k for k in np.argsort(accuracy, kind="stable") if totals[k] > 0]
    names = [validation.speakers[k] for k in order]
    fig = go.Figure(go.Bar(x=names, y=accuracy[order], customdata=totals[order], marker_color=BLUE,
                           hovertemplate="%{x}: %{y:.0%} of %{customdata} utterances<extra></extra>"))
    fig.update_layout(xaxis={"title": "speaker (worst first)", "type": "category",
                             "showticklabels": len(names) <= NAMED_SPEAKERS},
                      yaxis={"title": METRIC, "tickformat": ".0%", "range": [0, 1.02]})
    png = png_figure(max(8.0, min(24.0, 0.25 * len(names))), 4.5)
    ax = png.add_subplot()
    ax.bar(range(len(names)), accuracy[order], color=BLUE)
    if len(names) <= NAMED_SPEAKERS:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.set_ylim(0, 1.02)
    label_axes(ax, "speaker (worst first)", METRIC, percent=True)
    return Section("speakers", "Accuracy per speaker", f"Each speaker's share of correct predictions, for {where}.",
                   fig, png)
