"""``automel search``, ``export``, ``studies``, ``show`` and ``dashboard``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from automel.cli._banks import NoiseOption, RirOption
from automel.cli._common import (
    DataOption,
    DeterministicOption,
    DeviceOption,
    HomeOption,
    console,
    err_console,
    handle_errors,
    interrupted_exit,
    quiet_optuna,
    seed_option,
    warn_plugin_failures,
)
from automel.cli._output import FormatOption, output_format, print_table

if TYPE_CHECKING:
    import optuna

    from automel.engine.job import SearchHooks

StudyOption = Annotated[str | None, typer.Option("--study", help="Study name [default: derived from the data set].")]
StorageOption = Annotated[str | None, typer.Option("--storage", help="SQLAlchemy URL or journal:PATH [default: sqlite:///<home>/<study>.db].")]


def register(app: typer.Typer) -> None:
    for name, func in (("search", search), ("refit", refit), ("export", export), ("studies", studies),
                       ("show", show), ("dashboard", dashboard)):
        app.command(name)(handle_errors(func))


def _names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def search(
    trials: Annotated[int, typer.Option(min=1,
        help="Most finished trials (complete + pruned) the study should hold; the time limit usually ends the "
             "search first.")] = 200,
    time_limit: Annotated[str | None, typer.Option("--time-limit",
        help="Wall-clock budget of the whole job: search, ensemble, refit and export: 90s, 30m, 2h or "
             "seconds (default 10m).")] = None,
    quality: Annotated[str, typer.Option(
        help="fast | balanced | best: how the budget is split (see README).")] = "balanced",
    refit: Annotated[bool, typer.Option("--refit/--no-refit",
        help="Retrain the winner on training + validation data, and export that.")] = True,
    data: DataOption = None,
    study: StudyOption = None,
    storage: StorageOption = None,
    create_dirs: Annotated[bool, typer.Option("--create-dirs",
        help="Create the missing folder of a SQLite or journal --storage (refused by default: a typo).")] = False,
    steps_per_trial: Annotated[int | None, typer.Option(min=10,
        help="Steps of the last rung (default: sized by the time limit).")] = None,
    timeout: Annotated[str | None, typer.Option(hidden=True, help="Old name of --time-limit.")] = None,
    sampler: Annotated[str, typer.Option(help="tpe | random | cmaes | gp")] = "tpe",
    pruner: Annotated[str, typer.Option(help="asha (successive halving) | median | hyperband | none")] = "asha",
    portfolio: Annotated[bool, typer.Option("--portfolio/--no-portfolio",
        help="Start a new study with known-good configurations.")] = True,
    encoders: Annotated[str | None, typer.Option(
        help="Comma-separated encoder names [default: all installed].")] = None,
    poolings: Annotated[str | None, typer.Option(
        help="Comma-separated pooling names [default: all installed].")] = None,
    heads: Annotated[str | None, typer.Option(help="Comma-separated head names [default: all installed].")] = None,
    max_params: Annotated[int | None, typer.Option("--max-params",
        help="Largest model (parameters, classifier included) the search may return.")] = None,
    max_latency_ms: Annotated[float | None, typer.Option("--max-latency-ms",
        help="Slowest model the search may return: CPU milliseconds for one 3 s utterance, measured once per "
             "trial.")] = None,
    device: DeviceOption = "auto",
    deterministic: DeterministicOption = False,
    seed: Annotated[int, seed_option("Seed of the sampler, the split and the trials.")] = 0,
    keep: Annotated[int, typer.Option(min=1, help="Keep the weights of the best K trials only.")] = 5,
    formats: Annotated[str | None, typer.Option("--formats",
        help="Comma-separated deployable formats the export also gets: onnx, torchscript.")] = None,
    workers: Annotated[int, typer.Option(min=1,
        help="Local worker processes on the study (one per GPU when several are visible).")] = 1,
    grace_period: Annotated[int, typer.Option(min=2, hidden=True,
        help="Seconds before a silent RUNNING trial is failed.")] = 60,
    adapt: Annotated[str, typer.Option("--adapt", help="test | none | DIR: adapt the export's feature and "
        "BatchNorm statistics to the data set's unlabelled test utterances, or to a folder of unlabelled "
        "data.")] = "test",
    noise: NoiseOption = None,
    rir: RirOption = None,
    objective: Annotated[str | None, typer.Option("--objective", help="clean | robust: rank trials on "
        "validation accuracy, or on its mean with the accuracy on copies heard through another channel and in "
        "noise [default: a new study's clean, an old study's own].")] = None,
    home: HomeOption = None,
) -> None:
    """Search encoders, poolings, heads and their parameters within a time limit; refit and export the best."""
    from automel.api import search as run_search
    from automel.engine.budget import DEFAULT_TIME_LIMIT_S, parse_duration
    from automel.errors import Interrupted

    limit_text = time_limit if time_limit is not None else timeout
    limit_s = parse_duration(limit_text) if limit_text is not None else DEFAULT_TIME_LIMIT_S
    console.print(f"automel search: time limit {_duration(limit_s)}{'' if limit_text else ' (the default)'}, "
                  f"quality {quality}, {'refit on all labelled data' if refit else 'no refit'}; "
                  f"at most {trials} trials", highlight=False, soft_wrap=True)
    quiet_optuna()
    warn_plugin_failures()
    try:
        result = run_search(
            data, time_limit=limit_s, quality=quality, trials=trials, refit=refit, study=study, storage=storage,
            home=home, encoders=_names(encoders), poolings=_names(poolings), heads=_names(heads), sampler=sampler,
            pruner=pruner, portfolio=portfolio, device=device, seed=seed, keep=keep, steps_per_trial=steps_per_trial,
            workers=workers, formats=_names(formats) or (), max_params=max_params, max_latency_ms=max_latency_ms,
            deterministic=deterministic, create_dirs=create_dirs, grace_period=grace_period, hooks=_hooks(trials),
            adapt=adapt, noise=noise, rir=rir, objective=objective)
    except Interrupted as exc:  # Ctrl-C or SIGTERM: the running trial is failed with the reason; exit 130 or 143
        raise interrupted_exit(str(exc)) from None
    run = result.run
    what = {"trial": "best trial", "refit": "refit model", "ensemble": "ensemble"}[result.kind]
    console.print(f"exported the {what} (trials {', '.join(map(str, result.trials))}) to {result.path} in "
                  f"{run.elapsed_s:.0f} s of {run.limit_s:.0f} s", highlight=False, soft_wrap=True)


def _hooks(trials: int) -> SearchHooks:
    """The CLI's view of a search: the live view on a terminal, else plain lines; the leaderboard at the end."""
    import time

    from automel.cli._flags import as_flags, flag_note
    from automel.cli._live import say_plain, search_view
    from automel.cli._progress import plain_counts
    from automel.engine.job import SearchHooks

    started = time.monotonic()
    view = search_view(trials, lambda: time.monotonic() - started)

    def say(line: str) -> None:
        console.print(as_flags(line), highlight=False, soft_wrap=True, markup=False)

    def aside(line: str) -> None:
        err_console.print(as_flags(line), highlight=False, soft_wrap=True, markup=False)

    return SearchHooks(note=say, aside=aside, phase=flag_note(say_plain), events=view.events(),
                       watching=lambda: view.live, refresh=view.refresh, on_search_end=_report_search,
                       cache_progress=plain_counts(err_console, "building the feature cache", "utterances"))


def _duration(seconds: float) -> str:
    """``2h``, ``30m`` or ``90s``: the largest unit that divides ``seconds``."""
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _report_search(study: optuna.Study, url: str) -> None:
    from automel.cli._live import leaderboard
    from automel.engine.search import state_counts

    counts = state_counts(study)
    console.print(f"study [bold]{study.study_name}[/] ({url}): {counts['complete']} complete, "
                  f"{counts['pruned']} pruned, {counts['fail']} failed", highlight=False, soft_wrap=True)
    if counts["complete"]:
        print_table(leaderboard(study))


def refit(
    study: StudyOption = None,
    steps: Annotated[int | None, typer.Option(min=1,
        help="Refit steps (default: the trial's, scaled by the added data; stretched to fill --time-limit).")] = None,
    time_limit: Annotated[str | None, typer.Option("--time-limit",
        help="Time for the ensemble, the refits and the export.")] = None,
    quality: Annotated[str, typer.Option(help="fast | balanced | best: ensemble size and seeds.")] = "balanced",
    data: Annotated[Path | None, typer.Option(help="The study's data set, if it moved.")] = None,
    storage: StorageOption = None,
    formats: Annotated[str | None, typer.Option("--formats",
        help="Comma-separated deployable formats the export also gets: onnx, torchscript.")] = None,
    adapt: Annotated[str, typer.Option("--adapt", help="test | none | DIR: the statistics the export adapts "
        "to (see automel search --adapt).")] = "test",
    device: DeviceOption = "auto",
    home: HomeOption = None,
) -> None:
    """Refit a finished study's best configuration(s) on all labelled data and export them."""
    from automel.api.exports import refit as refit_study
    from automel.cli._flags import flag_note

    try:
        result = refit_study(study, time_limit=time_limit, quality=quality, steps=steps, data=data,
                             formats=_names(formats) or (), adapt=adapt, device=device, storage=storage, home=home,
                             progress=flag_note(lambda line: console.print(line, highlight=False)))
    except KeyboardInterrupt:
        raise interrupted_exit("the study and the previous export are intact; rerun to refit") from None
    console.print(f"exported {result.kind} of trials {', '.join(str(m['trial']) for m in result.members)} "
                  f"to {result.path}", highlight=False)


def export(
    study: StudyOption = None,
    trial: Annotated[int | None, typer.Option(help="Trial number [default: the best].")] = None,
    out: Annotated[Path | None, typer.Option(help="Export folder [default: <home>/<study>/best].")] = None,
    data: Annotated[Path | None, typer.Option(help="The study's data set, if it moved.")] = None,
    storage: StorageOption = None,
    formats: Annotated[list[str] | None, typer.Option("--format",
        help="Also write the model as onnx (model.onnx) and/or torchscript (model.ts); repeatable or "
             "comma-separated. ONNX needs the onnx extra: pip install 'automel[onnx]'.")] = None,
    model: Annotated[Path | None, typer.Option("--model",
        help="Write --format files of this run directory or export folder (into it, or into --out) "
             "instead of exporting a study's trial.")] = None,
    pareto: Annotated[bool, typer.Option("--pareto",
        help="List the accuracy × size Pareto front (also in `show --format json`); with --trial N, export N, "
             "which must be on it.")] = False,
    adapt: Annotated[str, typer.Option("--adapt", help="test | none | DIR: the statistics the export adapts "
        "to (see automel search --adapt).")] = "test",
    home: HomeOption = None,
) -> None:
    """Export a trial: model.safetensors, config.json, a model card README.md and output.csv (and --format files).

    A refit or ensemble export in the study's folder is kept unless --trial N asks to replace it: --format
    alone then adds the deployable files to it and never changes its model.
    """
    from automel.api.exports import export as export_study
    from automel.api.exports import pareto_front
    from automel.exporting import require_formats

    chosen_formats = require_formats(formats)  # an unknown format or a missing extra fails before any work
    if model is not None:
        from automel.cli._exports import export_folder

        export_folder(model, out, chosen_formats, given_study=study is not None or trial is not None or pareto)
        return
    if pareto and trial is None:
        from automel.cli._exports import print_front

        print_front(pareto_front(study, storage=storage, home=home))
        return
    done = export_study(study, trial, out=out, formats=chosen_formats, adapt=adapt, pareto=pareto, data=data,
                        storage=storage, home=home)
    if done.action == "added":
        console.print(f"added {', '.join(p.name for p in done.added.values())} to {done.held} in {done.path}; "
                      "its model is unchanged", highlight=False, soft_wrap=True)
    elif done.action == "kept":
        console.print(f"{done.path} already holds {done.held}, which a trial's own weights would replace: nothing "
                      f"to do. Add deployable files with --format, or replace it with --trial N", highlight=False,
                      soft_wrap=True)
    else:
        console.print(f"exported trial {done.trial} (valid accuracy {done.valid_acc:.2%}) to {done.path}",
                      highlight=False)
        if done.replaced is not None:
            console.print(f"replaced {done.replaced} with trial {done.trial}", highlight=False)


def studies(home: HomeOption = None, output: FormatOption = "table") -> None:
    """List the studies in the home directory (with --format json or csv: one record per study)."""
    from automel.cli._studies import print_studies
    from automel.home import resolve_home

    print_studies(resolve_home(home), output_format(output))


def show(study: StudyOption = None, storage: StorageOption = None, home: HomeOption = None,
         output: FormatOption = "table") -> None:
    """The leaderboard, parameter importances and the pruned/failed trials with their reasons.

    With --format json or csv: every trial instead, best first, with its full parameters.
    """
    from automel.api.studies import show as overview_of
    from automel.cli._studies import print_show

    fmt = output_format(output)  # a bad --format fails before the study is read
    print_show(overview_of(study, home=home, storage=storage), fmt)


def dashboard(
    study: StudyOption = None,
    host: Annotated[str, typer.Option(help="Address to bind (loopback unless you mean to share it).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8080,
    storage: StorageOption = None,
    home: HomeOption = None,
) -> None:
    """Open a study in optuna-dashboard, with its trial artifacts attached."""
    import errno
    import socket

    from automel.errors import ConfigError

    def unusable(exc: OSError) -> ConfigError:
        if exc.errno == errno.EADDRINUSE:
            return ConfigError(f"port {port} on {host} is already in use; choose another --port")
        return ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --host or --port")

    # Try the address first, as the server will bind it (SO_REUSEADDR, IPv6 for a host with ':'): the server
    # itself would print its banner and then die with a traceback.
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise unusable(exc) from None

    from optuna_dashboard import run_server  # imports optuna: after the quick check

    from automel.engine.artifacts import artifact_store
    from automel.engine.handle import StudyHandle
    from automel.engine.study import open_storage
    from automel.home import resolve_home

    handle = StudyHandle.find(resolve_home(home), study, storage)
    loaded = handle.load()
    console.print(f"optuna-dashboard for study [bold]{loaded.study_name}[/] at http://{host}:{port}/ (Ctrl-C stops)",
                  highlight=False)
    try:
        run_server(open_storage(handle.url, heartbeat=False), host=host, port=port,
                   artifact_store=artifact_store(handle.artifacts))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise unusable(exc) from None  # taken in the moment since the probe
