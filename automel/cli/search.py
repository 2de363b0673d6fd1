"""``automel search``, ``export``, ``studies``, ``show`` and ``dashboard``."""

from __future__ import annotations

import os
import signal
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from automel.cli._common import (
    DataOption,
    DeviceOption,
    HomeOption,
    console,
    err_console,
    handle_errors,
    quiet_optuna,
    resolve_data,
    warn_plugin_failures,
)

StudyOption = Annotated[str | None, typer.Option("--study", help="Study name [default: derived from the data set].")]
StorageOption = Annotated[str | None, typer.Option("--storage", help="SQLAlchemy URL or journal:PATH [default: sqlite:///<home>/<study>.db].")]


def register(app: typer.Typer) -> None:
    for name, func in (("search", search), ("export", export), ("studies", studies), ("show", show),
                       ("dashboard", dashboard)):
        app.command(name)(handle_errors(func))


def _names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def search(
    trials: Annotated[int, typer.Option(min=1, help="Finished trials (complete + pruned) the study should hold.")] = 50,
    data: DataOption = None,
    study: StudyOption = None,
    storage: StorageOption = None,
    steps_per_trial: Annotated[int | None, typer.Option(min=10, help="Training steps per trial [default: 200 on CPU, 2000 on GPU].")] = None,
    timeout: Annotated[float | None, typer.Option(min=1, help="Stop starting new trials after this many seconds.")] = None,
    sampler: Annotated[str, typer.Option(help="tpe | random | cmaes | gp")] = "tpe",
    pruner: Annotated[str, typer.Option(help="median | hyperband | none")] = "median",
    encoders: Annotated[str | None, typer.Option(help="Comma-separated encoder names [default: all installed].")] = None,
    poolings: Annotated[str | None, typer.Option(help="Comma-separated pooling names [default: all installed].")] = None,
    heads: Annotated[str | None, typer.Option(help="Comma-separated head names [default: all installed].")] = None,
    device: DeviceOption = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the sampler, the split and the trials.")] = 0,
    keep: Annotated[int, typer.Option(min=1, help="Keep the weights of the best K trials only.")] = 5,
    workers: Annotated[int, typer.Option(min=1, help="Local worker processes on the study (one per GPU when several are visible).")] = 1,
    grace_period: Annotated[int, typer.Option(min=2, hidden=True, help="Seconds before a silent RUNNING trial is failed.")] = 60,
    home: HomeOption = None,
) -> None:
    """Search encoders, poolings, heads and their parameters; export the best model at the end."""
    from automel.cli._live import LiveView, leaderboard
    from automel.cli.workers import run_parallel
    from automel.home import resolve_home
    from automel.search.export import export_best
    from automel.search.runner import SearchOptions, open_search, run_trials, state_counts

    options = SearchOptions(trials=trials, study=study, storage=storage, steps_per_trial=steps_per_trial,
                            timeout=timeout, sampler=sampler, pruner=pruner, encoders=_names(encoders),
                            poolings=_names(poolings), heads=_names(heads), device=device, seed=seed, keep=keep,
                            grace_period=grace_period)
    root, where = resolve_data(data, home), resolve_home(home)
    quiet_optuna()
    warn_plugin_failures()
    opened = open_search(root, where, options)  # bad options and mismatched studies fail here, before any drawing
    if workers > 1:
        interrupted = run_parallel(opened, where, options, workers, root)
    else:
        view = LiveView(trials, err_console)
        with view.live:
            interrupted = run_trials(opened, where, options, view.events()).interrupted
    if interrupted:
        # A second Ctrl-C leaves at once; every trial write is already committed.
        signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    counts = state_counts(opened.study)
    console.print(f"study [bold]{opened.study.study_name}[/] ({opened.url}): {counts['complete']} complete, "
                  f"{counts['pruned']} pruned, {counts['fail']} failed", highlight=False)
    if counts["complete"]:
        console.print(leaderboard(opened.study))
        path, best, _ = export_best(opened.study, where, root)
        console.print(f"best trial {best.number}: valid accuracy {best.value:.2%} → exported to {path}",
                      highlight=False)
    if interrupted:
        err_console.print("interrupted: the study is consistent; rerun the same command to resume")
        raise typer.Exit(130)


def export(
    study: StudyOption = None,
    trial: Annotated[int | None, typer.Option(help="Trial number [default: the best].")] = None,
    out: Annotated[Path | None, typer.Option(help="Export folder [default: <home>/<study>/best].")] = None,
    data: Annotated[Path | None, typer.Option(help="The study's data set, if it moved.")] = None,
    storage: StorageOption = None,
    home: HomeOption = None,
) -> None:
    """Export a trial: model.safetensors, config.json, a model card README.md and output.csv."""
    from automel.home import resolve_home
    from automel.search.export import export_trial, pick_trial
    from automel.search.runner import load_study

    where = resolve_home(home)
    loaded = load_study(where, study, storage)
    chosen = pick_trial(loaded, trial)
    target = out or where / loaded.study_name / "best"
    path, valid_acc = export_trial(loaded, where, chosen, target, replace=out is None, data_root=data)
    console.print(f"exported trial {chosen.number} (valid accuracy {valid_acc:.2%}) to {path}", highlight=False)


def studies(home: HomeOption = None) -> None:
    """List the studies in the home directory."""
    import optuna

    from automel.home import resolve_home
    from automel.search.study import open_storage

    where = resolve_home(home)
    table = Table(title=f"Studies in {where}", title_justify="left")
    for column in ("study", "data set", "complete", "pruned", "failed", "running", "best", "last update"):
        table.add_column(column)
    for db in sorted(where.glob("*.db")):
        storage = open_storage(f"sqlite:///{db}", heartbeat=False)
        for summary in optuna.study.get_all_study_summaries(storage, include_best_trial=True):
            loaded = optuna.load_study(study_name=summary.study_name, storage=storage)
            states = Counter(t.state.name for t in loaded.get_trials(deepcopy=False))
            dataset = loaded.user_attrs.get("dataset", {})
            ends = [t.datetime_complete or t.datetime_start for t in loaded.get_trials(deepcopy=False)]
            last = max((e for e in ends if e), default=None)
            table.add_row(summary.study_name, f"{dataset.get('name', '?')} [{dataset.get('kind', '?')}]",
                          str(states["COMPLETE"]), str(states["PRUNED"]), str(states["FAIL"]), str(states["RUNNING"]),
                          f"{summary.best_trial.value:.2%}" if summary.best_trial else "-",
                          last.strftime("%Y-%m-%d %H:%M") if last else "-")
    console.print(table)


def show(study: StudyOption = None, storage: StorageOption = None, home: HomeOption = None) -> None:
    """The leaderboard, parameter importances and the pruned/failed trials with their reasons."""
    import optuna
    from optuna.trial import TrialState

    from automel.cli._live import leaderboard
    from automel.home import resolve_home
    from automel.search.runner import load_study

    loaded = load_study(resolve_home(home), study, storage)
    console.print(leaderboard(loaded, top=10))
    complete = loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) >= 2:
        table = Table(title="Parameter importances (fANOVA)", title_justify="left")
        table.add_column("parameter")
        table.add_column("importance")
        for name, value in optuna.importance.get_param_importances(loaded).items():
            table.add_row(name, f"{value:.3f}")
        console.print(table)
    else:
        console.print("parameter importances need at least two completed trials")
    pruned = loaded.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
    failed = loaded.get_trials(deepcopy=False, states=(TrialState.FAIL,))
    console.print(f"pruned: {len(pruned)}   failed: {len(failed)}")
    for trial in failed:
        console.print(f"  trial {trial.number} failed: {trial.user_attrs.get('fail_reason', 'no reason recorded')}",
                      highlight=False)


def dashboard(
    study: StudyOption = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless you mean to share it).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
    storage: StorageOption = None,
    home: HomeOption = None,
) -> None:
    """Open a study in optuna-dashboard, with its trial artifacts attached."""
    from optuna_dashboard import run_server

    from automel.home import resolve_home
    from automel.search.artifacts import artifact_store
    from automel.search.runner import load_study
    from automel.search.study import artifact_dir, default_storage, open_storage

    where = resolve_home(home)
    loaded = load_study(where, study, storage)
    url = storage or default_storage(where, loaded.study_name)
    console.print(f"optuna-dashboard for study [bold]{loaded.study_name}[/] at http://{host}:{port}/ (Ctrl-C stops)",
                  highlight=False)
    run_server(open_storage(url, heartbeat=False), host=host, port=port,
               artifact_store=artifact_store(artifact_dir(where, loaded.study_name)))
