"""The figures of the study's trials: history, accuracy by component and validation curves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.trial import TrialState

from automel.engine.search import is_surplus
from automel.report.common import BLUE, COMPONENTS, GREY, METRIC, ORANGE, Section, label_axes, png_figure, time_unit
from automel.report.params import importances_section, parallel_section, param_importances
from automel.report.pareto import pareto_section

if TYPE_CHECKING:
    from plotly.graph_objects import Figure as HtmlFigure


@dataclass(frozen=True)
class _Point:
    """A finished trial as the plots see it: its value (complete) or last reported accuracy (pruned)."""

    number: int
    pruned: bool
    value: float
    seconds: float  # when it finished, since the study's first trial started
    params: dict[str, Any]


def _points(study: optuna.Study) -> list[_Point]:
    """The study's finished trials (surplus ones left out) as points, in the order they finished."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
              if not is_surplus(t) and t.datetime_start is not None]
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start is not None]
    origin = min(starts) if starts else None
    points = []
    for t in trials:
        pruned = t.state == TrialState.PRUNED
        value = t.intermediate_values[max(t.intermediate_values)] if pruned and t.intermediate_values else t.value
        end = t.datetime_complete or t.datetime_start
        if value is None or end is None or origin is None:
            continue
        points.append(_Point(t.number, pruned, float(value), (end - origin).total_seconds(), dict(t.params)))
    return sorted(points, key=lambda p: (p.seconds, p.number))


def study_sections(study: optuna.Study) -> list[Section]:
    """History, importances, parallel coordinates, accuracy by component and by size, and validation curves."""
    points = _points(study)
    importances, why = param_importances(study)
    return [_history(points), importances_section(study, importances, why),
            parallel_section(study, importances, why), _components(points), pareto_section(study),
            _intermediate(study)]


def _history(points: list[_Point]) -> Section:
    """Each finished trial's value against wall time, with the steps of the best so far."""
    import plotly.graph_objects as go

    complete = [p for p in points if not p.pruned]
    pruned = [p for p in points if p.pruned]
    unit, size = time_unit(points[-1].seconds)
    when = {p.number: p.seconds / size for p in points}
    best_x, best_y = _best_so_far(complete, when)
    xlabel = f"wall time since the first trial started ({unit})"
    fig = go.Figure([
        go.Scatter(x=[when[p.number] for p in complete], y=[p.value for p in complete], mode="markers",
                   name="complete trial", marker={"color": BLUE, "size": 8},
                   customdata=[p.number for p in complete],
                   hovertemplate="trial %{customdata}: %{y:.2%}<extra></extra>"),
        go.Scatter(x=[when[p.number] for p in pruned], y=[p.value for p in pruned], mode="markers",
                   name="pruned trial (last reported)", marker={"color": GREY, "symbol": "x", "size": 7},
                   customdata=[p.number for p in pruned],
                   hovertemplate="trial %{customdata} (pruned): %{y:.2%}<extra></extra>"),
        go.Scatter(x=best_x, y=best_y, mode="lines", line={"shape": "hv", "color": ORANGE}, name="best so far"),
    ])
    fig.update_layout(xaxis_title=xlabel, yaxis_title=METRIC,
                      yaxis_tickformat=".0%")
    png = png_figure(9, 4.5)
    ax = png.add_subplot()
    ax.scatter([when[p.number] for p in complete], [p.value for p in complete], color=BLUE, label="complete trial")
    ax.scatter([when[p.number] for p in pruned], [p.value for p in pruned], color=GREY, marker="x",
               label="pruned trial (last reported)")
    ax.step(best_x, best_y, where="post", color=ORANGE, label="best so far")
    label_axes(ax, xlabel, METRIC, percent=True)
    ax.legend(loc="lower right")
    return Section("history", "Optimisation history", f"Each finished trial's {METRIC} when it finished, and the "
                   f"best so far ({len(complete)} complete, {len(pruned)} pruned).", fig, png)


def _best_so_far(complete: list[_Point], when: dict[int, float]) -> tuple[list[float], list[float]]:
    """The steps of the best value so far, drawn on to the last finished trial."""
    xs, ys, best = [], [], -1.0
    for p in complete:
        if p.value > best:
            best = p.value
            xs.append(when[p.number])
            ys.append(best)
    return [*xs, max(max(when.values()), xs[-1])], [*ys, ys[-1]]


def _components(points: list[_Point]) -> Section:
    """One panel per component: the value of the trials that chose each plugin."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(COMPONENTS), shared_yaxes=True, subplot_titles=COMPONENTS)
    png = png_figure(12, 4.5)
    axes = png.subplots(1, len(COMPONENTS), sharey=True)
    for column, (component, ax) in enumerate(zip(COMPONENTS, axes, strict=True), start=1):
        groups = _groups(points, component)
        _component_traces(fig, groups, column)
        _component_png(ax, groups, component)
    fig.update_yaxes(tickformat=".0%")
    fig.update_yaxes(title_text=METRIC, row=1, col=1)
    axes[0].set_ylabel(METRIC)
    return Section("components", "Accuracy by encoder, pooling and head", f"The {METRIC} of the complete trials "
                   "that used each plugin (boxes); pruned trials at their last reported accuracy (grey x).", fig, png)


def _groups(points: list[_Point], component: str) -> dict[str, tuple[list[_Point], list[_Point]]]:
    """Plugin name -> (its complete trials, its pruned trials), names sorted."""
    names = sorted({str(p.params.get(component, "?")) for p in points})
    chosen = {name: [p for p in points if str(p.params.get(component, "?")) == name] for name in names}
    return {name: ([p for p in group if not p.pruned], [p for p in group if p.pruned])
            for name, group in chosen.items()}


def _component_traces(fig: HtmlFigure, groups: dict[str, tuple[list[_Point], list[_Point]]], column: int) -> None:
    """Add one component's boxes (complete trials) and crosses (pruned) to column ``column``."""
    import plotly.graph_objects as go

    hover = "trial %{customdata}: %{y:.2%}<extra></extra>"
    complete = [(name, p) for name, (done, _) in groups.items() for p in done]
    pruned = [(name, p) for name, (_, stopped) in groups.items() for p in stopped]
    fig.add_trace(go.Box(x=[n for n, _ in complete], y=[p.value for _, p in complete], boxpoints="all", jitter=0.3,
                         pointpos=0, marker_color=BLUE, name="complete trials", legendgroup="complete",
                         showlegend=column == 1, customdata=[p.number for _, p in complete], hovertemplate=hover),
                  row=1, col=column)
    fig.add_trace(go.Scatter(x=[n for n, _ in pruned], y=[p.value for _, p in pruned], mode="markers",
                             marker={"color": GREY, "symbol": "x"}, name="pruned trials (last reported)",
                             legendgroup="pruned", showlegend=column == 1, customdata=[p.number for _, p in pruned],
                             hovertemplate=hover), row=1, col=column)
    fig.update_xaxes(categoryorder="array", categoryarray=list(groups), row=1, col=column)


def _component_png(ax: Any, groups: dict[str, tuple[list[_Point], list[_Point]]], component: str) -> None:
    """Draw one component's boxes and jittered points on ``ax``."""
    rng = np.random.default_rng(0)  # the jitter of the points: the same picture every time
    ax.boxplot([[p.value for p in done] or [np.nan] for done, _ in groups.values()], positions=range(len(groups)),
               widths=0.5, showfliers=False)
    for k, (done, stopped) in enumerate(groups.values()):
        for chosen, colour, marker in ((done, BLUE, "o"), (stopped, GREY, "x")):
            ax.scatter(k + rng.uniform(-0.12, 0.12, len(chosen)), [p.value for p in chosen], color=colour,
                       marker=marker, s=18, zorder=3)
    ax.set_xticks(range(len(groups)), list(groups), rotation=15)
    ax.set_title(component)
    label_axes(ax, None, None, percent=True)


def _intermediate(study: optuna.Study) -> Section:
    """Every trial's validation curve: complete ones solid, pruned ones dotted to where they stopped."""
    import plotly.graph_objects as go
    from optuna.visualization import plot_intermediate_values

    states = {t.number: t.state for t in study.get_trials(deepcopy=False) if not is_surplus(t)}
    curves = {t.number: sorted(t.intermediate_values.items()) for t in study.get_trials(deepcopy=False)
              if t.intermediate_values and states.get(t.number) in (TrialState.COMPLETE, TrialState.PRUNED)}
    fig = plot_intermediate_values(study)
    for trace in fig.data:  # one per trial, named "Trial<number>"
        number = int(trace.name[5:]) if str(trace.name).startswith("Trial") and trace.name[5:].isdigit() else -1
        pruned = states.get(number) == TrialState.PRUNED
        label = f"trial {number}{' (pruned)' if pruned else ''}"
        trace.update(line={"color": GREY if pruned else BLUE, "dash": "dot" if pruned else "solid"},
                     marker={"color": GREY if pruned else BLUE}, showlegend=False,
                     hovertemplate=f"{label}: step %{{x}}, %{{y:.2%}}<extra></extra>")
    for pruned in (False, True):
        ends = [(n, c[-1]) for n, c in curves.items() if (states[n] == TrialState.PRUNED) == pruned]
        fig.add_trace(go.Scatter(x=[e[1][0] for e in ends], y=[e[1][1] for e in ends], mode="markers",
                                 name="pruned here" if pruned else "complete",
                                 marker={"color": GREY if pruned else BLUE, "symbol": "x" if pruned else "circle",
                                         "size": 10 if pruned else 7},
                                 customdata=[e[0] for e in ends], hovertemplate="trial %{customdata}<extra></extra>"))
    fig.update_layout(title=None, showlegend=True, xaxis_title="training step", yaxis_title=METRIC,
                      yaxis_tickformat=".0%")
    png = png_figure(9, 4.5)
    ax = png.add_subplot()
    for number, curve in curves.items():
        pruned = states[number] == TrialState.PRUNED
        ax.plot([s for s, _ in curve], [v for _, v in curve], color=GREY if pruned else BLUE,
                linestyle=":" if pruned else "-", alpha=0.8)
        ax.scatter([curve[-1][0]], [curve[-1][1]], color=GREY if pruned else BLUE, marker="x" if pruned else "o",
                   s=30 if pruned else 14, zorder=3)
    label_axes(ax, "training step", METRIC, percent=True)
    ax.plot([], [], color=BLUE, marker="o", label="complete")
    ax.plot([], [], color=GREY, linestyle=":", marker="x", label="pruned here")
    ax.legend(loc="lower right")
    pruned_count = sum(states[n] == TrialState.PRUNED for n in curves)
    return Section("intermediate", "Validation curves", f"Each trial's {METRIC} at each validation "
                   f"({len(curves) - pruned_count} complete, solid; {pruned_count} pruned, dotted, stopped at the x).",
                   fig, png)
