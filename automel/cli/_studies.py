"""What ``automel studies`` and ``automel show`` print: a table for people, JSON or CSV for scripts.

The records hold every value whole (a trial's parameters as the study stored them, accuracies as fractions,
times in seconds); the tables format them for reading.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from rich.markup import escape
from rich.table import Table

from automel.cli._common import console, err_console
from automel.cli._output import Format, print_csv, print_json, print_table
from automel.engine.search import state_counts

if TYPE_CHECKING:
    from automel.api.studies import StudyOverview

STUDY_COLUMNS = ("study", "storage", "dataset", "dataset_kind", "complete", "pruned", "failed", "running",
                 "best_trial", "best_valid_acc", "last_update")
TRIAL_COLUMNS = ("rank", "trial", "state", "valid_acc", "steps", "seconds", "n_params", "latency_ms", "pareto",
                 "started", "completed", "fail_reason", "pruned_reason")


def print_studies(home: Path, fmt: Format) -> None:
    """Every study in ``home``'s SQLite files, one record each.

    A ``*.db`` that cannot be read (empty, corrupt, not Optuna's) hides none of the others: it is listed
    with its reason in ``error`` (a one-line warning on stderr too) and the command still exits 0, since
    the listing itself succeeded; scripts find the broken file in the ``error`` field (present only then:
    healthy records keep their fields).
    """
    rows = study_rows(home)
    broken = [row["error"] for row in rows if row.get("error")]
    for error in broken:
        err_console.print(f"warning: {error}", markup=False, highlight=False, soft_wrap=True)
    if fmt == "json":
        print_json(rows)
    elif fmt == "csv":
        print_csv(rows, columns=(*STUDY_COLUMNS, "error") if broken else STUDY_COLUMNS)
    else:
        print_table(_studies_table(home, rows))


def study_rows(home: Path) -> list[dict[str, Any]]:
    from automel.cli._flags import as_flags
    from automel.engine.handle import StudyHandle
    from automel.errors import StudyError

    rows: list[dict[str, Any]] = []
    for db in StudyHandle.databases(home):
        url = f"sqlite:///{db}"
        try:
            rows += _rows_of(url)
        except Exception as exc:  # whatever is wrong with one file, the others are listed; none is written to
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            reason = as_flags(str(exc)) if isinstance(exc, StudyError) else f"cannot read {db}: {first}"
            rows.append({**dict.fromkeys(STUDY_COLUMNS), "study": db.stem, "storage": url, "error": reason})
    return rows


def _rows_of(url: str) -> list[dict[str, Any]]:
    from automel.engine.study import open_storage

    rows = []
    storage = open_storage(url, heartbeat=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Optuna's "experimental" notes: noise on stderr
        summaries = optuna.study.get_all_study_summaries(storage, include_best_trial=True)
    for summary in summaries:
        loaded = optuna.load_study(study_name=summary.study_name, storage=storage)
        counts = state_counts(loaded)
        dataset = loaded.user_attrs.get("dataset", {})
        ends = [t.datetime_complete or t.datetime_start for t in loaded.get_trials(deepcopy=False)]
        last = max((e for e in ends if e), default=None)
        best = summary.best_trial
        rows.append({"study": summary.study_name, "storage": url, "dataset": dataset.get("name"),
                     "dataset_kind": dataset.get("kind"), "complete": counts["complete"],
                     "pruned": counts["pruned"], "failed": counts["fail"], "running": counts["running"],
                     "best_trial": best.number if best else None, "best_valid_acc": best.value if best else None,
                     "last_update": last.isoformat(timespec="seconds") if last else None})
    return rows


def _studies_table(home: Path, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=f"Studies in {escape(str(home))}", title_justify="left")
    for column in ("study", "data set", "complete", "pruned", "failed", "running", "best", "last update"):
        table.add_column(column)
    for row in rows:
        if row.get("error"):
            table.add_row(escape(row["study"]), "[red]unreadable[/]", *["-"] * 5, "-")
            continue
        best = row["best_valid_acc"]
        table.add_row(escape(row["study"]), escape(f"{row['dataset'] or '?'} [{row['dataset_kind'] or '?'}]"),
                      str(row["complete"]), str(row["pruned"]), str(row["failed"]), str(row["running"]),
                      f"{best:.2%}" if best is not None else "-",
                      row["last_update"].replace("T", " ")[:16] if row["last_update"] else "-")
    return table


def print_show(overview: StudyOverview, fmt: Format) -> None:
    """The leaderboard, importances and failures (table); or every trial with its full parameters."""
    if fmt == "table":
        _show_tables(overview)
        return
    rows = [trial.to_json() for trial in overview.trials]
    if fmt == "csv":
        params = list(dict.fromkeys(name for row in rows for name in row["params"]))
        print_csv([{**{k: row[k] for k in TRIAL_COLUMNS}, **row["params"]} for row in rows],
                  columns=[*TRIAL_COLUMNS, *params])
    else:
        print_json(overview.to_json())


def _show_tables(overview: StudyOverview) -> None:
    from automel.cli._live import leaderboard_table

    print_table(leaderboard_table(overview.leaderboard))
    if overview.importances is not None:
        table = Table(title="Parameter importances", title_justify="left")
        table.add_column("parameter")
        table.add_column("importance")
        for name, value in overview.importances.items():
            table.add_row(escape(name), f"{value:.3f}")
        print_table(table)
    else:
        console.print("parameter importances need at least two completed trials")
    console.print(f"pruned: {overview.counts['pruned']}   failed: {overview.counts['fail']}")
    for line in overview.failure_lines():
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
