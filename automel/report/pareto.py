"""The accuracy × size figure: every completed trial by parameter count, with the Pareto front drawn through."""

from __future__ import annotations

import optuna

from automel.engine.constraints import Constraints
from automel.engine.leaderboard import LeaderboardRow, leaderboard_rows
from automel.report.common import BLUE, GREY, METRIC, ORANGE, Section, label_axes, png_figure

TITLE = "Accuracy × size"


def pareto_section(study: optuna.Study) -> Section:
    """Completed trials' accuracy against their size (log scale); the front, and the limit if there is one."""
    import plotly.graph_objects as go

    rows = [row for row in leaderboard_rows(study) if row.n_params is not None]
    if not rows:
        return Section("pareto", TITLE, "No completed trial recorded its size (studies made before automel "
                       "recorded sizes): no accuracy × size front.")
    front = sorted((row for row in rows if row.pareto), key=lambda row: row.n_params or 0)
    others = [row for row in rows if not row.pareto]
    xlabel = "parameters (log scale)"
    fig = go.Figure([
        go.Scatter(x=[r.n_params for r in others], y=[r.valid_acc for r in others], mode="markers",
                   name="completed trial", marker={"color": GREY, "size": 8}, customdata=_labels(others),
                   hovertemplate="%{customdata}<br>%{x:,} parameters: %{y:.2%}<extra></extra>"),
        go.Scatter(x=[r.n_params for r in front], y=[r.valid_acc for r in front], mode="lines+markers",
                   line={"shape": "hv", "color": ORANGE}, marker={"color": BLUE, "size": 10},
                   name="Pareto front", customdata=_labels(front),
                   hovertemplate="%{customdata}<br>%{x:,} parameters: %{y:.2%}<extra></extra>"),
    ])
    limit = Constraints.of_study(study).max_params
    if limit is not None:
        fig.add_vline(x=limit, line_dash="dash", line_color=GREY, annotation_text="--max-params")
    fig.update_layout(xaxis_title=xlabel, xaxis_type="log", yaxis_title=METRIC, yaxis_tickformat=".0%")
    png = png_figure(9, 4.5)
    ax = png.add_subplot()
    ax.scatter(_sizes(others), [r.valid_acc for r in others], color=GREY, label="completed trial")
    ax.step(_sizes(front), [r.valid_acc for r in front], where="post", color=ORANGE)
    ax.scatter(_sizes(front), [r.valid_acc for r in front], color=BLUE, zorder=3, label="Pareto front")
    for row in front:
        ax.annotate(str(row.trial), (row.n_params, row.valid_acc), textcoords="offset points", xytext=(4, 4))
    if limit is not None:
        ax.axvline(limit, color=GREY, linestyle="--", label="--max-params")
    ax.set_xscale("log")
    label_axes(ax, xlabel, METRIC, percent=True)
    ax.legend(loc="lower right")
    return Section("pareto", TITLE, f"The {METRIC} of each completed trial against its size; the front holds the "
                   f"trials no other beats on both ({len(front)} of {len(rows)}). `automel export --pareto` lists "
                   "them; `--trial N` exports one.", fig, png)


def _sizes(rows: list[LeaderboardRow]) -> list[int]:
    return [r.n_params or 0 for r in rows]


def _labels(rows: list[LeaderboardRow]) -> list[str]:
    return [f"trial {r.trial}: {r.encoder}/{r.pooling}/{r.head}" for r in rows]
