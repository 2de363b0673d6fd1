"""``automel plugins``: every installed plugin, where it came from, and the ranges it searches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from automel.cli._common import console, handle_errors
from automel.errors import ConfigError

if TYPE_CHECKING:
    from automel.plugin_info import PluginInfo

C = TypeVar("C", bound=str)


def register(app: typer.Typer) -> None:
    app.command("plugins")(handle_errors(plugins))


def plugins(
    kind: Annotated[str | None, typer.Option(help="encoder | pooling | head [default: all].")] = None,
    scale: Annotated[str | None, typer.Option(help="cpu | gpu: show one scale's ranges [default: both].")] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any plugin failed to load (for CI).")] = False,
) -> None:
    """List the plugins by kind: distribution, version and search-space ranges, then load failures.

    The ranges are read from each plugin's own suggest(). A search on a CPU uses the cpu scale, on a GPU
    the gpu scale, and a study keeps the scale it began with.
    """
    from automel.plugin import KINDS, SCALES, Kind
    from automel.plugin_info import describe_plugins
    from automel.registry import DISABLE_ENV, default_registry

    kinds: tuple[Kind, ...] = KINDS if kind is None else (_choice("--kind", kind, KINDS),)
    scales = SCALES if scale is None else (_choice("--scale", scale, SCALES),)
    registry = default_registry()
    infos = describe_plugins(registry, kinds, scales)
    console.print(_table(infos, scales))
    broken = [i for i in infos if i.error]
    failures = [f for f in registry.failures if f.kind in kinds]
    if failures:
        console.print(f"\n[bold red]{len(failures)} plugin(s) failed to load[/] (the rest work without them):")
        for failure in failures:
            console.print(f"  {escape(failure.describe())}", highlight=False, soft_wrap=True)
    if os.environ.get(DISABLE_ENV, "") in ("1", "true", "yes"):
        console.print(f"\n[dim]external plugins are not loaded: {DISABLE_ENV} is set[/]")
    if strict and (failures or broken):
        raise typer.Exit(1)


def _choice(option: str, value: str, allowed: Sequence[C]) -> C:
    """``value`` as one of ``allowed``; otherwise a one-line error naming the option."""
    for choice in allowed:
        if choice == value:
            return choice
    raise ConfigError(f"{option} {value!r} is not one of {', '.join(allowed)}")


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
