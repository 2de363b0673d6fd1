"""The refit's own training curve: loss, training accuracy and learning rate from its ``metrics.jsonl``.

A refit trains on every labelled utterance, so it has no validation curve; what it logged every ``log_every``
steps is all there is to see of it. An ensemble export holds one run folder per member (``member-0``, ...),
each with its own log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automel.errors import AutomelError
from automel.report.common import Section, label_axes, png_figure

PANELS = (("loss", "training loss", None), ("train_acc", "training accuracy", ".0%"), ("lr", "learning rate", ".1e"))
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


@dataclass(frozen=True)
class RefitLog:
    """One refit model of an export: what it was (trial, seed, steps) and the rows it logged."""

    label: str
    info: dict[str, Any]
    rows: list[dict[str, float]]


def _run_folders(folder: Path) -> list[Path]:
    """The export's run folders: its members in order for an ensemble, else the export itself."""
    from automel.model_folder import ENSEMBLE

    if not (folder / ENSEMBLE).is_file():
        return [folder]
    members = [p for p in folder.glob("member-*") if p.is_dir() and p.name[7:].isdigit()]
    return sorted(members, key=lambda p: int(p.name[7:]))


def _rows(path: Path) -> list[dict[str, float]]:
    """The log rows of ``path`` that hold a step, a loss and a learning rate (unreadable lines are skipped)."""
    rows = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and all(isinstance(row.get(k), int | float) for k in ("step", "loss", "lr")):
            rows.append({k: float(v) for k, v in row.items() if isinstance(v, int | float)})
    return rows


def refit_logs(folder: Path) -> list[RefitLog]:
    """The refit models of the export in ``folder`` with their logs; empty when it holds no refit model."""
    from automel.model_folder import METRICS, read_config

    logs = []
    for run in _run_folders(folder):
        try:
            info = read_config(run).extra.get("refit")
        except AutomelError:
            continue
        if not isinstance(info, dict):
            continue
        label = f"trial {info.get('trial', '?')} refit, seed {info.get('seed', '?')}"
        logs.append(RefitLog(label, info, _rows(run / METRICS)))
    return logs


def refit_sections(folder: Path) -> list[Section]:
    """The refit's training curve; nothing for an export that is no refit, a sentence when it logged nothing."""
    logs = refit_logs(folder) if folder.is_dir() else []
    if not logs:
        return []
    title = "The refit's training curve"
    drawn = [log for log in logs if log.rows]
    if not drawn:
        return [Section("refit", title, f"The refit model in {folder} logged no training curve (its metrics.jsonl "
                        "is empty: an export made before refits logged their loss); `automel refit` makes a new one.")]
    first = drawn[0].info
    text = (f"What the exported refit model{'s' if len(logs) > 1 else ''} logged while training on all "
            f"{first.get('utterances', '?')} labelled utterances (training + validation, so there is no held-out "
            "curve): the loss and the accuracy on the training crops (augmented, so below what the model does on "
            "whole utterances) over each logging window, and the learning rate.")
    return [Section("refit", title, text, _plotly(drawn), _png(drawn))]


def _plotly(logs: list[RefitLog]) -> Any:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=len(PANELS), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[title for _, title, _ in PANELS])
    for k, log in enumerate(logs):
        steps = [r["step"] for r in log.rows]
        for row, (key, title, _) in enumerate(PANELS, start=1):
            fig.add_trace(go.Scatter(x=steps, y=[r.get(key) for r in log.rows], mode="lines+markers",
                                     name=log.label, legendgroup=log.label, showlegend=row == 1,
                                     line={"color": COLOURS[k % len(COLOURS)]},
                                     hovertemplate=f"{log.label}: step %{{x}}, {title} %{{y:.4g}}<extra></extra>"),
                          row=row, col=1)
    for row, (_, title, tickformat) in enumerate(PANELS, start=1):
        fig.update_yaxes(title_text=title, tickformat=tickformat, row=row, col=1)
    fig.update_xaxes(title_text="training step", row=len(PANELS), col=1)
    fig.update_layout(height=720)
    return fig


def _png(logs: list[RefitLog]) -> Any:
    png = png_figure(9, 8)
    png.suptitle("the exported refit model, trained on all labelled utterances")
    axes = png.subplots(len(PANELS), 1, sharex=True)
    for k, log in enumerate(logs):
        steps = [r["step"] for r in log.rows]
        for ax, (key, _, _) in zip(axes, PANELS, strict=True):
            ax.plot(steps, [r.get(key, float("nan")) for r in log.rows], marker="o", markersize=3,
                    color=COLOURS[k % len(COLOURS)], label=log.label)
    for k, (ax, (_, title, tickformat)) in enumerate(zip(axes, PANELS, strict=True)):
        label_axes(ax, "training step" if k == len(PANELS) - 1 else None, title, percent=tickformat == ".0%")
    axes[0].legend(loc="upper right")
    return png
