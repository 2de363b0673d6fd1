"""What ``automel studies`` and ``automel show`` print: a table for people, JSON or CSV for scripts.

The records hold every value whole (a trial's parameters as the study stored them, accuracies as fractions,
times in seconds); the tables format them for reading.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.markup import escape
from rich.table import Table

from automel.cli._common import console, err_console
from automel.cli._output import Format, print_csv, print_json, print_table
from automel.engine.constraints import LATENCY_ATTR, PARAMS_ATTR
from automel.engine.leaderboard import front_rows
from automel.engine.runner import is_surplus, state_counts

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
    from automel.errors import StudyError

    rows: list[dict[str, Any]] = []
    for db in sorted(home.glob("*.db")):
        url = f"sqlite:///{db}"
        try:
            rows += _rows_of(url)
        except Exception as exc:  # whatever is wrong with one file, the others are listed; none is written to
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            reason = str(exc) if isinstance(exc, StudyError) else f"cannot read {db}: {first}"
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


def print_show(study: optuna.Study, fmt: Format) -> None:
    """The leaderboard, importances and failures (table); or every trial with its full parameters."""
    if fmt == "table":
        _show_tables(study)
        return
    rows = trial_rows(study)
    if fmt == "csv":
        params = list(dict.fromkeys(name for row in rows for name in row["params"]))
        print_csv([{**{k: row[k] for k in TRIAL_COLUMNS}, **row["params"]} for row in rows],
                  columns=[*TRIAL_COLUMNS, *params])
    else:
        print_json({"study": study.study_name, "direction": study.direction.name.lower(), "trials": rows,
                    "importances": _importances(study)})


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trial in leaderboard order (completed ones by accuracy, ranked; then the rest by number);
    surplus trials (started after the study held its target) are left out, as in the counts."""
    trials = [t for t in study.get_trials(deepcopy=False) if not is_surplus(t)]
    ranked = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
                    key=lambda t: (-(t.value or 0.0), t.number))
    numbers = {t.number for t in ranked}
    front = {row.trial for row in front_rows(study)}
    rest = sorted((t for t in trials if t.number not in numbers), key=lambda t: t.number)
    return ([_trial_row(t, rank, t.number in front) for rank, t in enumerate(ranked, 1)]
            + [_trial_row(t, None, False) for t in rest])


def _trial_row(trial: FrozenTrial, rank: int | None, pareto: bool) -> dict[str, Any]:
    attrs = trial.user_attrs
    return {"rank": rank, "trial": trial.number, "state": trial.state.name, "valid_acc": trial.value,
            "steps": attrs.get("steps", trial.last_step), "seconds": attrs.get("seconds"),
            "n_params": attrs.get(PARAMS_ATTR), "latency_ms": attrs.get(LATENCY_ATTR), "pareto": pareto,
            "started": trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else None,
            "completed": trial.datetime_complete.isoformat(timespec="seconds") if trial.datetime_complete else None,
            "fail_reason": attrs.get("fail_reason") if trial.state == TrialState.FAIL else None,
            "pruned_reason": attrs.get("pruned_reason") if trial.state == TrialState.PRUNED else None,
            "params": dict(trial.params)}


def _importances(study: optuna.Study) -> dict[str, float] | None:
    """Parameter importances (Optuna's default evaluator); None with fewer than two completed trials."""
    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return None
    with warnings.catch_warnings():  # one "may be inaccurate" warning per parameter of a small study
        warnings.filterwarnings("ignore", message="Some regimes for parameter", category=UserWarning)
        importances = optuna.importance.get_param_importances(study)
    return {name: float(value) for name, value in importances.items()}


def _show_tables(study: optuna.Study) -> None:
    from automel.cli._live import leaderboard

    print_table(leaderboard(study, top=10))
    importances = _importances(study)
    if importances is not None:
        table = Table(title="Parameter importances", title_justify="left")
        table.add_column("parameter")
        table.add_column("importance")
        for name, value in importances.items():
            table.add_row(escape(name), f"{value:.3f}")
        print_table(table)
    else:
        console.print("parameter importances need at least two completed trials")
    counts = state_counts(study)
    console.print(f"pruned: {counts['pruned']}   failed: {counts['fail']}")
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if not is_surplus(trial):
            console.print(f"  trial {trial.number} failed: {trial.user_attrs.get('fail_reason', 'no reason recorded')}",
                          markup=False, highlight=False, soft_wrap=True)
