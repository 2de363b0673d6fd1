"""The report's HTML page (plotly.js inlined, a render-status script) and writing it with its PNGs atomically."""

from __future__ import annotations

import html
import os
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from automel.engine.search import state_counts
from automel.errors import ConfigError
from automel.files import owned_tempdir
from automel.outputs import Inside, check_output_file
from automel.report.common import COMPONENTS, FIGURES, STATUS_ID, Section, complete_trials, metric_name, time_unit
from automel.report.figures import study_sections
from automel.report.model import model_sections

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure as PngFigure


@dataclass(frozen=True)
class Report:
    """What :func:`write_report` wrote: the page, its PNGs, the figures drawn and why others are missing."""

    html: Path
    pngs: list[Path]
    figures: list[str]
    notes: list[str] = field(default_factory=list)


def check_out(out: Path, inputs: Iterable[Path] = (), inside: Iterable[Inside] = ()) -> Path:
    """``out`` made absolute, after the output rule (:mod:`automel.outputs`) passed the page and each PNG
    beside it: a missing folder, a folder in the way, one of ``inputs`` (the study's database) or a place
    ``inside`` a folder the report reads is one :class:`ConfigError` line, before the study is read."""
    out = Path(out).expanduser().absolute()
    inside = list(inside)
    check_output_file(out, "out", inputs=inputs, inside=inside)
    for name in FIGURES:
        try:
            check_output_file(out.parent / _png_name(out.stem, name), inputs=inputs, inside=inside)
        except ConfigError as exc:
            raise ConfigError(f"`out` {out}: the PNG beside it, {exc}") from None
    return out


def study_reads(study: optuna.Study, home: Path, data_root: Path | None = None) -> tuple[list[Path], list[Inside]]:
    """What a report of ``study`` reads and must not overwrite: its database in the home (the default
    storage), its own folder (artifacts, the export) and its data set."""
    from automel.engine.handle import StudyHandle

    handle = StudyHandle.of(study, home)
    return [handle.database], handle.reads(study, data_root)


def write_report(study: optuna.Study, home: Path, out: Path, data_root: Path | None = None,
                 device: torch.device | None = None) -> Report:
    """Write the report of ``study`` to ``out`` (HTML) and ``<out stem>-<figure>.png`` beside it.

    The exported model is ``<home>/<study>/best``; its predictions are computed on ``device`` (default: the best
    here) from the study's data set (``data_root`` if it moved). PNGs of an earlier report of the same name
    that this one lacks are removed, so the folder never shows a stale figure.
    """
    out = check_out(out, *study_reads(study, home, data_root))
    complete_trials(study)
    sections = study_sections(study)
    sections += model_sections(study, home, data_root, device)
    drawn = [s for s in sections if s.plotly is not None]
    pngs = _write_files(out, render_page(study, sections, out.stem), drawn)
    notes = list(dict.fromkeys(s.text for s in sections if s.plotly is None))
    return Report(out, pngs, [s.name for s in drawn], notes)


def _write_files(out: Path, page: str, drawn: list[Section]) -> list[Path]:
    """Write ``page`` to ``out`` and the PNGs of ``drawn`` beside it, all or nothing; return the PNGs' paths.

    The files are made in a temporary folder beside ``out`` and renamed into place, after the PNGs of figures
    that this report lacks are removed.
    """
    folder = out.parent
    tmp = owned_tempdir(out)  # named after this process: a later report clears it if this one is killed
    try:
        for section in drawn:
            save_png(section.png, tmp / _png_name(out.stem, section.name))
        (tmp / out.name).write_text(page, encoding="utf-8")
        for name in FIGURES:
            if name not in {s.name for s in drawn}:
                (folder / _png_name(out.stem, name)).unlink(missing_ok=True)
        pngs = []
        for section in drawn:
            pngs.append(folder / _png_name(out.stem, section.name))
            os.replace(tmp / pngs[-1].name, pngs[-1])
        os.replace(tmp / out.name, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return pngs


def _png_name(stem: str, figure: str) -> str:
    """The file name of ``figure``'s PNG beside the page ``<stem>.html``."""
    return f"{stem}-{figure}.png"


def save_png(figure: PngFigure | None, path: Path) -> None:
    """Draw ``figure`` on matplotlib's Agg canvas into ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    assert figure is not None, "every drawn section has both figures"
    with warnings.catch_warnings():
        # A name in a script the font lacks (Chinese, emoji) is drawn as a box; the HTML page shows it whole.
        # matplotlib would print one warning per character and figure on the user's terminal.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from", category=UserWarning)
        warnings.filterwarnings("ignore", message=r".*[Mm]atplotlib currently does not support", category=UserWarning)
        FigureCanvasAgg(figure).print_png(str(path))


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.5rem; border-bottom: 1px solid #ddd; }
.summary td { padding: 0.1rem 1rem 0.1rem 0; } .note { color: #8a5300; } .png { font-size: 0.85rem; }
"""

# Before plotly.js, so that an error while it loads is recorded too. After the page loaded, it waits (up to
# 5 s) until every plot holds its rendered SVG, then writes what it found into the hidden status element.
_STATUS_SCRIPT = """
(function () {
  var errors = [];
  window.addEventListener("error", function (e) { errors.push(String(e.message || e.type)); });
  window.addEventListener("unhandledrejection", function (e) { errors.push("unhandled rejection: " + e.reason); });
  var consoleError = console.error;
  console.error = function () {
    errors.push(Array.prototype.join.call(arguments, " "));
    return consoleError.apply(console, arguments);
  };
  function check(tries) {
    var plots = document.querySelectorAll(".plotly-graph-div"), missing = [];
    plots.forEach(function (div) { if (!div.querySelector("svg.main-svg")) { missing.push(div.id); } });
    if (missing.length && tries > 0) { setTimeout(function () { check(tries - 1); }, 100); return; }
    var status = document.getElementById("%(status)s");
    status.textContent = JSON.stringify({expected: Number(status.dataset.expected), plots: plots.length,
                                         rendered: plots.length - missing.length, missing: missing, errors: errors});
  }
  window.addEventListener("load", function () { check(50); });
})();
"""


def render_page(study: optuna.Study, sections: list[Section], stem: str) -> str:
    """The report's HTML: plotly.js inlined once, then one section per figure (or its note)."""
    from plotly.offline import get_plotlyjs

    parts = []
    for section in sections:
        parts.append(f'<section id="{section.name}">\n<h2>{html.escape(section.title)}</h2>')
        if section.plotly is None:
            parts.append(f'<p class="note">{html.escape(section.text)}</p>\n</section>')
            continue
        png = _png_name(stem, section.name)
        section.plotly.update_layout(margin_t=40)
        div = section.plotly.to_html(full_html=False, include_plotlyjs=False, div_id=f"figure-{section.name}",
                                     default_height="460px", config={"displaylogo": False, "responsive": True})
        parts.append(f'<p>{html.escape(section.text)}</p>\n{div}\n'
                     f'<p class="png"><a href="{html.escape(png)}">{html.escape(png)}</a></p>\n</section>')
    expected = sum(s.plotly is not None for s in sections)
    title = f"automel report: study {study.study_name}"
    # plotly.js never holds "</script" (plotly inlines it the same way); it is a few MB, once per page.
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}</title>\n'
            f"<style>{_STYLE}</style>\n<script>{_STATUS_SCRIPT % {'status': STATUS_ID}}</script>\n"
            f'<script type="text/javascript">{get_plotlyjs()}</script>\n</head>\n<body>\n'
            f"<h1>{html.escape(title)}</h1>\n{_summary(study)}\n" + "\n".join(parts)
            + f'\n<pre id="{STATUS_ID}" hidden data-expected="{expected}"></pre>\n</body>\n</html>\n')


def _summary(study: optuna.Study) -> str:
    """A table of the study at a glance: objective, data set, trials, best trial, wall time."""
    counts = state_counts(study)
    best = study.best_trial
    dataset = study.user_attrs.get("dataset") or {}
    starts = [t.datetime_start for t in study.get_trials(deepcopy=False) if t.datetime_start]
    ends = [t.datetime_complete for t in study.get_trials(deepcopy=False) if t.datetime_complete]
    span = "-"
    if starts and ends:
        unit, size = time_unit((max(ends) - min(starts)).total_seconds())
        span = f"{(max(ends) - min(starts)).total_seconds() / size:.1f} {unit}"
    choice = ", ".join(f"{c} {best.params[c]}" for c in COMPONENTS if c in best.params)
    rows = [("objective", f"{metric_name(study)} (maximised)"),
            ("data set", f"{dataset.get('name', '?')} [{dataset.get('kind', '?')}]"),
            ("trials", f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed"),
            ("best trial", f"{best.number}: {best.value:.2%} ({choice})"),
            ("steps per trial", str(study.user_attrs.get("steps_per_trial", "?"))),
            ("wall time", span)]
    cells = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="summary">{cells}</table>'
