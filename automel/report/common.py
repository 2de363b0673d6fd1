"""What every part of the report shares: its names and colours, a figure section, and the helpers that draw."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from automel.errors import StudyError

if TYPE_CHECKING:
    from matplotlib.figure import Figure as PngFigure
    from plotly.graph_objects import Figure as HtmlFigure

METRIC = "validation accuracy"  # what every trial's value is (see the study's metric name)
STATUS_ID = "automel-render-status"
COMPONENTS = ("encoder", "pooling", "head")
FIGURES = ("history", "importances", "parallel", "components", "pareto", "intermediate", "confusion", "speakers",
           "refit")
PARALLEL_AXES = 8  # the components and the most important other parameters
NAMED_SPEAKERS = 40  # beyond this many speakers the axes leave the names off (hovering still shows them)
PAIRED_SPEAKERS = 30  # beyond this many speakers the confusion matrix gives way to the most-confused pairs
BLUE, GREY, ORANGE = "#1f77b4", "#9a9a9a", "#ff7f0e"
PNG_LABEL_CHARS = 18  # a speaker's name on a PNG axis is cut to this many characters (the HTML shows it whole)


@dataclass
class Section:
    """One figure of the report, or, without figures, the sentence that says why it is missing."""

    name: str
    title: str
    text: str
    plotly: HtmlFigure | None = None
    png: PngFigure | None = None


def complete_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The study's complete trials; :class:`StudyError` when there is none (nothing to report)."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not complete:
        raise StudyError(f"study '{study.study_name}' has no complete trial: nothing to report yet "
                         f"(every trial was pruned or failed, or none has finished)")
    return complete


def metric_name(study: optuna.Study) -> str:
    """The name the study gives its objective, or :data:`METRIC` when it names none."""
    names = study.metric_names
    return names[0] if names else METRIC


def time_unit(seconds: float) -> tuple[str, float]:
    """The unit that suits a span of ``seconds``, and its size in seconds."""
    if seconds >= 3 * 3600:
        return "hours", 3600.0
    return ("minutes", 60.0) if seconds >= 180 else ("seconds", 1.0)


def png_figure(width: float, height: float) -> PngFigure:
    """A matplotlib figure of ``width`` x ``height`` inches for the Agg canvas (no pyplot, no global state)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def label_axes(ax: Any, xlabel: str | None, ylabel: str | None, percent: bool = False) -> None:
    """Label the axes of a PNG plot (the y axis in percent if asked) and draw a light grid."""
    from matplotlib.ticker import PercentFormatter

    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.grid(alpha=0.3)


def png_label(name: str, width: int = PNG_LABEL_CHARS) -> str:
    """``name`` as a PNG tick label: cut to ``width`` characters with an ellipsis, so long names fit the
    figure instead of being clipped, and with ``$`` escaped, which matplotlib would read as mathtext."""
    text = " ".join(str(name).split())  # a line break or tab would stretch the axis
    if len(text) > width:
        text = text[: width - 1] + "…"
    return text.replace("$", r"\$")
