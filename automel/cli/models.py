"""``automel train``, ``predict`` and ``score``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from automel.cli._banks import NoiseOption, RirOption
from automel.cli._common import (
    DataOption,
    DeterministicOption,
    DeviceOption,
    HomeOption,
    console,
    err_console,
    handle_errors,
    resolve_data,
    seed_option,
    warn_plugin_failures,
)
from automel.errors import ConfigError, DataError
from automel.outputs import Inside, check_output_file, check_output_folder


def register(app: typer.Typer) -> None:
    app.command("train")(handle_errors(train))
    app.command("predict")(handle_errors(predict))
    app.command("score")(handle_errors(score))


def train(
    preset: Annotated[str | None, typer.Option(help="simple | medium | hard | boss (the course's levels).")] = None,
    config: Annotated[Path | None, typer.Option(
        help="JSON of trial parameters, or a run's/export's config.json.")] = None,
    data: DataOption = None,
    steps: Annotated[int | None, typer.Option(min=1, show_default=False,
        help="Training steps [default: 2000; with --time-limit, as many as the time allows].")] = None,
    time_limit: Annotated[str | None, typer.Option("--time-limit", show_default=False,
        help="Wall-clock limit of the run (90s, 30m, 2h): the learning rate decays to zero by then.")] = None,
    valid_every: Annotated[int, typer.Option(min=1, help="Validate every N steps.")] = 200,
    out: Annotated[Path | None, typer.Option(help="Run directory [default: <home>/runs/<name>-<time>].")] = None,
    device: DeviceOption = "auto",
    seed: Annotated[int, seed_option("Seed for initialisation, batches and the split.")] = 0,
    compile_model: Annotated[bool, typer.Option("--compile",
        help="torch.compile the model (worth it for long GPU runs).")] = False,
    deterministic: DeterministicOption = False,
    noise: NoiseOption = None,
    rir: RirOption = None,
    large_margin: Annotated[float, typer.Option("--large-margin", min=0.0, max=0.9,
        help="Fraction of the run, at its end, trained on longer crops with a larger margin (0: none).")] = 0.0,
    average: Annotated[int, typer.Option("--average", min=0,
        help="Snapshots of the schedule's tail to average (kept where validation says it helps; 0: none).")] = 8,
    home: HomeOption = None,
) -> None:
    """Train one model and write a run directory (weights, config, metrics, output.csv)."""
    from automel.cli._banks import check_bank_folders, with_banks
    from automel.cli._progress import add_training_task, counted_progress, progress_hook, training_progress
    from automel.home import resolve_home
    from automel.runs import write_run_dir
    from automel.train.config import RunSettings
    from automel.train.device import select_device
    from automel.train.run import metrics_lines, open_workspace, test_submission, train_run

    warn_plugin_failures()
    started = time.monotonic()
    limit_s = train_time_limit(time_limit)
    params = _load_params(preset, config)
    check_bank_folders(noise, rir)
    steps = steps or (DEFAULT_STEPS if limit_s is None else TIMED_MAX_STEPS)
    deadline = None if limit_s is None else started + limit_s - finish_reserve_s(limit_s)
    settings = RunSettings(steps=steps, valid_every=valid_every, seed=seed, compile=compile_model,
                           deterministic=deterministic, deadline=deadline, large_margin=large_margin, average=average)
    torch_device = select_device(device)
    root = resolve_data(data, home)
    with counted_progress(err_console, "building the feature cache", "utterances") as cache_progress:
        work = open_workspace(root, resolve_home(home), split_seed=seed, on_progress=cache_progress)
    settings = with_banks(settings, params, noise, rir, work, resolve_home(home))
    name = preset or (config.stem if config else "simple")
    target = out or resolve_home(home) / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_output_folder(target, "--out", inside=[("the data set", root)])  # a file in the way: one line, at once
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"{target}: already exists and is not empty; choose another --out")
    dataset = work.store.dataset
    console.print(f"Training [bold]{escape(name)}[/] on {escape(dataset.name)} \\[{dataset.kind}] "
                  f"({len(work.split.train)} train / {len(work.split.valid)} valid utterances) on {torch_device}",
                  highlight=False)
    with training_progress(console=err_console) as progress:
        task = add_training_task(progress, name, None if steps == TIMED_MAX_STEPS else steps)
        model, result, record = train_run(params, work, settings, torch_device,
                                          on_progress=progress_hook(progress, task))
    rows = test_submission(model, work.store, record.speakers) if work.store.dataset.test else None
    run_dir = write_run_dir(target, model.state_dict(), record, metrics_lines(result), rows)
    scored = ("valid accuracy" if work.scored_on == "valid" else
              "training accuracy (no validation utterances: every speaker has one)")
    console.print(f"best {scored} [bold]{result.best_valid_acc:.2%}[/] at step {result.best_step} "
                  f"({result.seconds:.0f} s) → {run_dir}", highlight=False)
    if limit_s is not None:
        ended = "annealed by the time limit" if result.schedule == "clock" else "all planned steps ran"
        console.print(f"{result.steps} steps in {time.monotonic() - started:.0f} s of {limit_s:g} s: {ended}",
                      highlight=False)


DEFAULT_STEPS = 2000
TIMED_MAX_STEPS = 1_000_000  # with --time-limit and no --steps: the clock ends the run


def train_time_limit(text: str | None) -> float | None:
    """Seconds of ``--time-limit``, checked like ``automel search``'s (same one-line errors)."""
    from automel.engine.budget import check_time_limit, parse_duration

    if text is None:
        return None
    seconds = parse_duration(text, "--time-limit")
    check_time_limit(seconds)
    return seconds


def finish_reserve_s(limit_s: float) -> float:
    """Set aside from a timed run for the test predictions and the files: the search's export reserve."""
    from automel.engine.budget import EXPORT_RESERVE_S, EXPORT_RESERVE_SHARE

    return EXPORT_RESERVE_S + EXPORT_RESERVE_SHARE * limit_s


def _load_params(preset: str | None, config: Path | None) -> dict[str, Any]:
    from automel.presets import preset_params

    params: dict[str, Any] = preset_params(preset or "simple") if preset or not config else {}
    if config is not None:
        from automel.userjson import read_user_json

        if config.is_dir():
            raise ConfigError(f"{config}: cannot read a folder; give --config a JSON file of parameters")
        data = read_user_json(config, ConfigError)  # depth, integer and string limits: one line, never a traceback
        if not isinstance(data, dict):
            raise ConfigError(f"{config}: must hold a JSON object of parameters")
        given = data.get("params", data) if data.get("format") else data
        if not isinstance(given, dict):
            raise ConfigError(f"{config}: 'params' must be a JSON object of parameters")
        params.update(given)
    return params


def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory or an export.")],
    inputs: Annotated[list[Path] | None, typer.Argument(
        help="Audio files or folders (wav, flac, ogg; any rate) or .pt features to predict, instead of a data "
             "set's test utterances.", show_default=False)] = None,
    data: Annotated[Path | None, typer.Option(
        help="Data set whose testdata.json to predict [default: the run's].")] = None,
    out: Annotated[Path, typer.Option(help="Submission file to write.")] = Path("output.csv"),
    top_k: Annotated[int, typer.Option("--top-k", min=1,
        help="With INPUTS: how many speakers (and probabilities) to list per file.")] = 1,
    allow_unknown_speakers: Annotated[bool, typer.Option("--allow-unknown-speakers",
        help="Predict even when the data set's speakers differ from the model's (labels are the model's).")] = False,
    adapt: Annotated[str, typer.Option("--adapt", help="auto | none | test | DIR: adapt the feature and "
        "BatchNorm statistics to the test utterances, or to a folder of unlabelled data (auto: as the model "
        "was exported).")] = "auto",
    device: DeviceOption = "auto",
    home: HomeOption = None,
) -> None:
    """Write an HW4 submission (Id,Category) for a data set's test utterances, or predict audio files.

    With INPUTS the model's own front end (recorded in config.json) turns audio into features, and the CSV
    lists the top-k speakers with their probabilities.
    """
    if inputs:
        if data is not None:
            raise ConfigError("give either INPUTS (audio files) or --data (a data set's test utterances), not both")
        from automel.cli.inference import predict_audio

        predict_audio(run_dir, inputs, out, top_k, device)
        return
    from automel.adapt import adapt_for_prediction, check_adapt
    from automel.adapt import describe as describe_adaptation
    from automel.data.layout import read_dataset
    from automel.data.store import open_store
    from automel.home import resolve_home
    from automel.inference import SpeakerInference
    from automel.model_folder import load_run
    from automel.runs import check_compatible, write_submission_rows
    from automel.train.device import select_device
    from automel.train.run import test_submission

    reads: list[Inside] = [("the model folder", run_dir)]
    check_output_file(out, "--out", inside=reads, example="output.csv")  # before the model is loaded or a cache built
    check_adapt(adapt, auto=True)
    model, record = load_run(run_dir)
    root = data or Path(record.dataset.get("root", ""))
    if data is None and not root.is_dir():
        raise ConfigError(f"{run_dir}: its data set {root} is gone; pass --data")
    check_output_file(out, "--out", inside=[*reads, ("the data set", root)])  # D/answers.csv would then score 100 %
    differ, detail = _speaker_difference(record.speakers, read_dataset(root).speakers)
    if differ and not allow_unknown_speakers:
        raise DataError(f"{root}: {differ} speakers differ from the model's in {run_dir} ({detail}); "
                        "pass --allow-unknown-speakers to predict with the model's speakers anyway")
    if differ:
        err_console.print(f"[yellow]warning:[/] {differ} speakers differ between {escape(str(root))} and the model "
                          f"({escape(detail)}); predictions name the model's {len(record.speakers)} speakers only",
                          highlight=False, soft_wrap=True)
    store = open_store(root, resolve_home(home))
    check_compatible(record, store.n_mels, root)
    if not store.dataset.test:
        raise ConfigError(f"{root}: has no test utterances (testdata.json) to predict")
    torch_device = select_device(device)
    adaptation = adapt_for_prediction(model, record.extra, store, adapt, resolve_home(home), torch_device,
                                      SpeakerInference(model, record, run_dir).features)
    if adaptation is not None:
        err_console.print(escape(describe_adaptation(adaptation)), highlight=False, soft_wrap=True)
    rows = test_submission(model, store, record.speakers, torch_device)
    try:
        write_submission_rows(out, rows)  # atomic: a failed write leaves nothing behind
    except OSError as exc:
        raise ConfigError(f"{out}: cannot write the submission ({exc.strerror or exc})") from None
    console.print(f"wrote {out} ({len(rows)} predictions)", highlight=False)


def _speaker_difference(model: tuple[str, ...], data: tuple[str, ...]) -> tuple[int, str]:
    """How many speakers are in only one of the two sets, and which, in words (``0, ""`` when they agree)."""
    unknown = sorted(set(data) - set(model))
    absent = sorted(set(model) - set(data))
    parts = [f"{len(names)} only in the {where}, e.g. {names[0]}"
             for names, where in ((unknown, "data set"), (absent, "model")) if names]
    return len(unknown) + len(absent), "; ".join(parts)


def score(
    submission: Annotated[Path, typer.Argument(help="A submission CSV (Id,Category).")],
    answers: Annotated[Path, typer.Argument(help="The answer key CSV (Id,Category).")],
) -> None:
    """Accuracy of a submission against an answer key."""
    from automel.score import score_submission

    result = score_submission(submission, answers)
    console.print(f"accuracy {result.accuracy:.4f} ({result.correct}/{result.total})", highlight=False)
