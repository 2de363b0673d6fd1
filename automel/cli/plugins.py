"""``automel plugins``: every installed plugin, where it came from, and the ranges it searches."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from automel.cli._common import choice, console, err_console, handle_errors
from automel.cli._output import FormatOption, output_format, print_csv, print_json, print_table

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

    from automel.plugin_info import PluginInfo
    from automel.registry import LoadFailure


def register(app: typer.Typer) -> None:
    app.command("plugins")(handle_errors(plugins))


def plugins(
    kind: Annotated[str | None, typer.Option(help="encoder | pooling | head [default: all].")] = None,
    scale: Annotated[str | None, typer.Option(help="cpu | gpu: show one scale's ranges [default: both].")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any plugin failed to load (for CI).")] = False,
    output: FormatOption = "table",
) -> None:
    """List the plugins by kind: distribution, version and search-space ranges, then load failures.

    The ranges are read from each plugin's own suggest(). A search on a CPU uses the cpu scale, on a GPU
    the gpu scale, and a study keeps the scale it began with. With --format json or csv: one record per
    parameter (a plugin without parameters, or one that failed, has one record with an empty parameter).
    """
    from automel.plugin import KINDS, SCALES, Kind
    from automel.plugin_info import describe_plugins
    from automel.registry import DISABLE_ENV, default_registry

    fmt = output_format(output)
    kinds: tuple[Kind, ...] = KINDS if kind is None else (choice("--kind", kind, KINDS),)
    scales = SCALES if scale is None else (choice("--scale", scale, SCALES),)
    registry = default_registry()
    infos = describe_plugins(registry, kinds, scales)
    broken = [i for i in infos if i.error]
    failures = [f for f in registry.failures if f.kind in kinds]
    if fmt == "table":
        print_table(_table(infos, scales))
    elif fmt == "json":
        print_json(_records(infos, failures, scales, structured=True))
    else:
        print_csv(_records(infos, failures, scales, structured=False))
    notes = console if fmt == "table" else err_console  # stdout holds nothing but the document
    if failures:
        notes.print(f"\n[bold red]{len(failures)} plugin(s) failed to load[/] (the rest work without them):")
        for failure in failures:
            notes.print(f"  {escape(failure.describe())}", highlight=False, soft_wrap=True)
    if os.environ.get(DISABLE_ENV, "") in ("1", "true", "yes"):
        notes.print(f"\n[dim]external plugins are not loaded: {DISABLE_ENV} is set[/]")
    if strict and (failures or broken):
        raise typer.Exit(1)


def _records(infos: list[PluginInfo], failures: list[LoadFailure], scales: tuple[str, ...],
             structured: bool) -> list[dict[str, Any]]:
    """One record per parameter, then one per load failure; ``range_<scale>`` is an object when
    ``structured`` (JSON: the exact bounds), else the table's text."""
    rows: list[dict[str, Any]] = []
    for info in infos:
        source = {"kind": info.kind, "plugin": info.name, "distribution": info.distribution, "version": info.version}
        params: list[str | None] = [*(info.params() if not info.error else [])]
        for param in params or [None]:
            ranges = {f"range_{s}": _range(info.spaces[s][param], structured)
                      if param is not None and param in info.spaces.get(s, {}) else None for s in scales}
            rows.append({**source, "parameter": param, **ranges, "error": info.error})
    for failure in failures:
        rows.append({"kind": failure.kind, "plugin": failure.name, "distribution": failure.distribution,
                     "version": failure.version, "parameter": None, **{f"range_{s}": None for s in scales},
                     "error": f"failed to load: {failure.error}"})
    return rows


def _range(distribution: BaseDistribution, structured: bool) -> Any:
    """``{"type": "IntDistribution", "low": 128, "high": 1024, "log": true, "step": 1, "text": ...}``, or the text."""
    import json

    from optuna.distributions import distribution_to_json

    from automel.plugin_info import format_distribution

    text = format_distribution(distribution)
    if not structured:
        return text
    encoded = json.loads(distribution_to_json(distribution))
    return {"type": encoded["name"], **encoded["attributes"], "text": text}


def _table(infos: list[PluginInfo], scales: tuple[str, ...]) -> Table:
    """One row per parameter; the plugin's columns are filled on its first row only."""
    from automel.plugin_info import format_distribution

    table = Table(title="Installed plugins", title_justify="left",
                  caption="Ranges come from each plugin's suggest(): a search on a CPU uses the cpu scale, "
                          "on a GPU the gpu scale.", caption_justify="left")
    for column in ("kind", "plugin", "distribution"):
        table.add_column(column, overflow="fold")
    table.add_column("parameter", no_wrap=True)  # whole, so it can be copied into a config file
    for scale in scales:
        table.add_column(f"range ({scale} scale)", overflow="fold")
    for info in infos:
        if info.error:
            rows = [["", f"[red]{escape(info.error)}[/]", *[""] * (len(scales) - 1)]]
        else:
            rows = [[escape(p), *(escape(format_distribution(info.spaces[s][p])) if p in info.spaces[s] else "-"
                                  for s in scales)] for p in info.params()]
        rows = rows or [["[dim](no parameters)[/]", *[""] * len(scales)]]
        for i, cells in enumerate(rows):
            source = f"{info.distribution} {info.version}".strip()
            lead = [info.kind, escape(info.name), escape(source)] if i == 0 else [""] * 3
            table.add_row(*lead, *cells, end_section=i == len(rows) - 1)
    return table
