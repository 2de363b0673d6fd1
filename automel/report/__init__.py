"""A study as one HTML page with plots, and a PNG of each plot beside it (``automel report``).

The page shows the optimisation history against wall time with the best accuracy so far, the parameter
importances, parallel coordinates, the accuracy of each encoder, pooling and head, every trial's validation
curve (pruned trials drawn apart, where they stopped), and a model's confusion matrix (the most-confused
speaker pairs, with many speakers) and per-speaker accuracy on the study's validation utterances: the export's,
or, for a refit export (which trained on them), its source trial's own model, beside the refit's training curve.

The interactive figures are plotly (``optuna.visualization`` where Optuna has the plot); plotly.js is inlined
once, so the page works offline. The PNGs are drawn with matplotlib's Agg canvas, without pyplot's global
state. A figure that cannot be drawn (no export yet, too few complete trials) is replaced by a sentence that
says why. Nothing is written until every figure is built; the files are made in a temporary folder beside
``out`` and renamed into place.

The page records, in a hidden ``<pre id="automel-render-status">``, how many plots it drew and any JavaScript
error it raised: a headless browser's ``--dump-dom`` shows whether a person would see every plot.

The parts: :mod:`~automel.report.common` (names, colours, :class:`Section`, drawing helpers),
:mod:`~automel.report.figures` and :mod:`~automel.report.params` (the study's figures),
:mod:`~automel.report.model` (which model is scored on validation), :mod:`~automel.report.confusion` (its
errors), :mod:`~automel.report.refit` (the refit's curve) and :mod:`~automel.report.page` (the HTML and writing it).
"""

from automel.report.common import (
    BLUE,
    COMPONENTS,
    FIGURES,
    GREY,
    METRIC,
    NAMED_SPEAKERS,
    ORANGE,
    PAIRED_SPEAKERS,
    PARALLEL_AXES,
    STATUS_ID,
    Section,
    complete_trials,
)
from automel.report.confusion import confused_pairs
from automel.report.figures import study_sections
from automel.report.model import Validation, evaluate_export, evaluate_source, model_sections
from automel.report.page import Report, check_out, render_page, write_report
from automel.report.refit import refit_logs

__all__ = [
    "BLUE",
    "COMPONENTS",
    "FIGURES",
    "GREY",
    "METRIC",
    "NAMED_SPEAKERS",
    "ORANGE",
    "PAIRED_SPEAKERS",
    "PARALLEL_AXES",
    "STATUS_ID",
    "Report",
    "Section",
    "Validation",
    "check_out",
    "complete_trials",
    "confused_pairs",
    "evaluate_export",
    "evaluate_source",
    "model_sections",
    "refit_logs",
    "render_page",
    "study_sections",
    "write_report",
]
