"""A model's errors on the validation utterances: the confusion matrix (or, with many speakers, the most-confused
pairs) and each speaker's accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from automel.report.common import (
    BLUE,
    METRIC,
    NAMED_SPEAKERS,
    PAIRED_SPEAKERS,
    Section,
    label_axes,
    png_figure,
    png_label,
)

if TYPE_CHECKING:
    from automel.report.model import Validation

TOP_PAIRS = 15  # rows of the most-confused pairs table


@dataclass(frozen=True)
class Pair:
    """Two speakers the model mixes up: how often each was taken for the other, of how many utterances."""

    first: str
    second: str
    first_as_second: int
    second_as_first: int
    first_total: int
    second_total: int

    @property
    def confusions(self) -> int:
        return self.first_as_second + self.second_as_first


def confused_pairs(validation: Validation, top: int = TOP_PAIRS) -> list[Pair]:
    """The ``top`` speaker pairs with the most utterances taken for one another (both ways), most first."""
    counts = validation.confusion()
    both = counts + counts.T
    first, second = np.triu_indices(len(counts), k=1)
    errors = both[first, second]
    order = [k for k in np.lexsort((second, first, -errors)) if errors[k] > 0][:top]
    totals = counts.sum(axis=1)
    names = validation.speakers
    return [Pair(names[first[k]], names[second[k]], int(counts[first[k], second[k]]), int(counts[second[k], first[k]]),
                 int(totals[first[k]]), int(totals[second[k]])) for k in order]


def confusion_section(validation: Validation, where: str) -> Section:
    """The confusion matrix, or the most-confused pairs when there are more than ``PAIRED_SPEAKERS`` speakers."""
    if len(validation.speakers) > PAIRED_SPEAKERS:
        return _pairs(validation, where)
    return _heatmap(validation, where)


def _heatmap(validation: Validation, where: str) -> Section:
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
    png.suptitle(validation.caption)
    ax = png.add_subplot()
    image = ax.imshow(counts, cmap="Blues", interpolation="nearest")
    png.colorbar(image, ax=ax, label="utterances")
    if n <= NAMED_SPEAKERS:
        labels = [png_label(name) for name in names]
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
    ax.set_xlabel("predicted speaker")
    ax.set_ylabel("true speaker")
    return Section("confusion", f"Confusion matrix: {validation.model}",
                   f"Utterances by true and predicted speaker, for {where}.", fig, png)


_PAIR_COLUMNS = ("speaker A", "speaker B", "A taken for B", "B taken for A", "confusions", "utterances of A / B")


def _pair_rows(pairs: list[Pair]) -> list[list[str]]:
    """The table's cells, one row per pair; one row saying so when no two speakers were confused."""
    if not pairs:
        return [["(none: no two speakers were confused)", "", "", "", "0", ""]]
    return [[p.first, p.second, str(p.first_as_second), str(p.second_as_first), str(p.confusions),
             f"{p.first_total} / {p.second_total}"] for p in pairs]


def _pairs(validation: Validation, where: str) -> Section:
    """A table of the most-confused speaker pairs (a full matrix of this many speakers cannot be read)."""
    import plotly.graph_objects as go
    from matplotlib.transforms import Bbox

    pairs = confused_pairs(validation)
    rows = _pair_rows(pairs)
    fig = go.Figure(go.Table(header={"values": list(_PAIR_COLUMNS), "align": "left", "fill_color": "#dde8f3"},
                             cells={"values": [list(c) for c in zip(*rows, strict=True)], "align": "left"}))
    fig.update_layout(height=min(900, 120 + 28 * len(rows)))
    png = png_figure(10, 0.9 + 0.24 * len(rows))
    png.suptitle(validation.caption)
    ax = png.add_subplot()
    ax.axis("off")
    cells = [[png_label(cell, 28) for cell in row] for row in rows]
    table = ax.table(cellText=cells, colLabels=list(_PAIR_COLUMNS), bbox=Bbox.from_bounds(0, 0, 1, 1), cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    n = len(validation.speakers)
    wrong = int((validation.labels != validation.predictions).sum())
    return Section("confusion", f"Most-confused speaker pairs: {validation.model}",
                   f"The {len(pairs)} speaker pairs most often taken for one another (both ways), of {wrong} "
                   f"wrong predictions among {n} speakers, for {where}. With more than {PAIRED_SPEAKERS} "
                   f"speakers a full confusion matrix cannot be read.", fig, png)


def per_speaker_section(validation: Validation, where: str) -> Section:
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
    png.suptitle(validation.caption)
    ax = png.add_subplot()
    ax.bar(range(len(names)), accuracy[order], color=BLUE)
    if len(names) <= NAMED_SPEAKERS:
        ax.set_xticks(range(len(names)), [png_label(name) for name in names], rotation=90, fontsize=7)
    ax.set_ylim(0, 1.02)
    label_axes(ax, "speaker (worst first)", METRIC, percent=True)
    return Section("speakers", f"Accuracy per speaker: {validation.model}",
                   f"Each speaker's share of correct predictions, for {where}.", fig, png)
