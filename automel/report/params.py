"""The figures of the parameters: Optuna's importances and parallel coordinates of the complete trials."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial

from automel.report.common import (
    BLUE,
    COMPONENTS,
    METRIC,
    PARALLEL_AXES,
    Section,
    complete_trials,
    label_axes,
    metric_name,
    png_figure,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure as PngFigure


def param_importances(study: optuna.Study) -> tuple[dict[str, float] | None, str]:
    """Optuna's parameter importances (its default evaluator), or None and why not."""
    if len(complete_trials(study)) < 2:
        return None, "need at least two complete trials"
    try:
        with warnings.catch_warnings():  # small studies warn once per parameter that importances are rough
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study)
    except (ValueError, RuntimeError) as exc:
        return None, f"Optuna could not compute them ({str(exc).splitlines()[0]})"
    if not found:
        return None, "no parameter is shared by all complete trials"
    return {name: float(value) for name, value in found.items()}, ""


def importances_section(study: optuna.Study, importances: dict[str, float] | None, why: str) -> Section:
    """Optuna's importance bars, and a horizontal bar chart of them as the PNG."""
    title = "Parameter importances"
    if importances is None:
        return Section("importances", title, f"Parameter importances are missing: {why}.")
    from optuna.visualization import plot_param_importances

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = plot_param_importances(study, target_name=metric_name(study))
    fig.update_layout(title=None)
    names = list(importances)[::-1]
    png = png_figure(9, max(3.0, 0.3 * len(names) + 1))
    ax = png.add_subplot()
    ax.barh(names, [importances[n] for n in names], color=BLUE)
    label_axes(ax, f"importance for {METRIC}", None)
    return Section("importances", title, "How much each parameter shared by all complete trials explains of "
                   f"their {METRIC} (Optuna's default evaluator).", fig, png)


def parallel_section(study: optuna.Study, importances: dict[str, float] | None, why: str) -> Section:
    """Parallel coordinates over the components and the most important shared parameters."""
    title = "Parallel coordinates"
    if importances is None:
        return Section("parallel", title, f"Parallel coordinates are missing: {why}.")
    from optuna.visualization import plot_parallel_coordinate

    complete = complete_trials(study)
    shared = [n for n in complete[0].params if all(n in t.params for t in complete)]
    ranked = [n for n in COMPONENTS if n in shared] + [n for n in importances if n in shared and n not in COMPONENTS]
    params = ranked[:PARALLEL_AXES]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = plot_parallel_coordinate(study, params=params, target_name=metric_name(study))
    fig.update_layout(title=None, margin={"l": 80, "r": 80})
    return Section("parallel", title, f"The complete trials across the components and the most important "
                   f"parameters, coloured by {METRIC}.", fig, _parallel_png(complete, params))


def _parallel_png(trials: list[FrozenTrial], params: list[str]) -> PngFigure:
    """The parallel coordinates as a PNG: one line per trial, coloured by its value."""
    from matplotlib import colormaps

    png = png_figure(11, 5)
    ax = png.add_subplot()
    values = [float(t.value or 0.0) for t in trials]
    low, high = min(values), max(values)
    columns = [_scaled([t.params[p] for t in trials]) for p in params]
    for row, value in enumerate(values):
        colour = colormaps["viridis"]((value - low) / (high - low) if high > low else 1.0)
        ax.plot(range(len(params)), [c[0][row] for c in columns], color=colour, alpha=0.8)
    for axis, (_, ticks) in enumerate(columns):
        ax.axvline(axis, color="black", linewidth=0.8)
        for position, label in ticks:
            ax.text(axis + 0.03, position, label, fontsize=7, va="center")
    ax.set_xticks(range(len(params)), [p.split(".", 1)[-1] if p.count(".") > 1 else p for p in params],
                  rotation=20, ha="right")
    ax.set_yticks([])
    ax.set_title(f"colour: {METRIC} from {low:.0%} (dark) to {high:.0%} (light)", fontsize=9)
    return png


def _scaled(values: list[Any]) -> tuple[list[float], list[tuple[float, str]]]:
    """Positions in [0, 1] of one parameter's values, and labelled ticks (numbers: min and max; else each)."""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        low, high = float(min(values)), float(max(values))
        span = high - low or 1.0
        return [(float(v) - low) / span for v in values], [(0.0, f"{low:.3g}"), (1.0, f"{high:.3g}")]
    labels = sorted({str(v) for v in values})
    step = 1.0 / max(1, len(labels) - 1)
    where = {label: k * step if len(labels) > 1 else 0.5 for k, label in enumerate(labels)}
    return [where[str(v)] for v in values], [(pos, label) for label, pos in where.items()]
