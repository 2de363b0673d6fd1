"""``automel train``, ``predict`` and ``score``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    seed_option,
    warn_plugin_failures,
)
from automel.errors import ConfigError

if TYPE_CHECKING:
    from automel.api import TrainHooks, TrainPlan


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
    from automel.api import train as train_model

    warn_plugin_failures()
    run = train_model(preset, config, data, steps=steps, time_limit=time_limit, valid_every=valid_every, out=out,
                      device=device, seed=seed, compile=compile_model, deterministic=deterministic, noise=noise,
                      rir=rir, large_margin=large_margin, average=average, home=home, hooks=_train_hooks())
    scored = ("valid accuracy" if run.scored_on == "valid" else
              "training accuracy (no validation utterances: every speaker has one)")
    console.print(f"best {scored} [bold]{run.valid_acc:.2%}[/] at step {run.best_step} "
                  f"({run.seconds:.0f} s) → {run.path}", highlight=False)
    limit_s = run.plan.time_limit_s
    if limit_s is not None:
        ended = "annealed by the time limit" if run.ended_by_time_limit else "all planned steps ran"
        console.print(f"{run.steps} steps in {run.elapsed_s:.0f} s of {limit_s:g} s: {ended}", highlight=False)


def _train_hooks() -> TrainHooks:
    """The training run as the terminal shows it: the plan and the results on stdout; the feature-cache build
    and the training's progress bar (or plain counted lines off a terminal) on stderr."""
    from automel.api import TrainHooks
    from automel.cli._flags import flag_note
    from automel.cli._progress import add_training_task, counted_progress, progress_hook, training_progress

    def start(plan: TrainPlan) -> None:
        console.print(f"Training [bold]{escape(plan.name)}[/] on {escape(plan.dataset)} \\[{plan.kind}] "
                      f"({plan.train_utterances} train / {plan.valid_utterances} valid utterances) on {plan.device}",
                      highlight=False)

    @contextlib.contextmanager
    def training(plan: TrainPlan) -> Iterator[Callable[[int, dict[str, float]], None]]:
        with training_progress(console=err_console) as progress:
            yield progress_hook(progress, add_training_task(progress, plan.name, plan.steps))

    return TrainHooks(note=flag_note(lambda line: console.print(line, highlight=False, soft_wrap=True, markup=False)),
                      caching=lambda: counted_progress(err_console, "building the feature cache", "utterances"),
                      start=start, training=training)


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
    from automel.api import predict as predict_data_set

    written = predict_data_set(run_dir, data, out, adapt=adapt, allow_unknown_speakers=allow_unknown_speakers,
                               device=device, home=home)
    if written.warning is not None:
        err_console.print(f"[yellow]warning:[/] {escape(written.warning)}", highlight=False, soft_wrap=True)
    if written.adaptation is not None:
        err_console.print(escape(written.adaptation), highlight=False, soft_wrap=True)
    console.print(f"wrote {written.path} ({len(written)} predictions)", highlight=False)


def score(
    submission: Annotated[Path, typer.Argument(help="A submission CSV (Id,Category).")],
    answers: Annotated[Path, typer.Argument(help="The answer key CSV (Id,Category).")],
) -> None:
    """Accuracy of a submission against an answer key."""
    from automel.score import score_submission

    result = score_submission(submission, answers)
    console.print(f"accuracy {result.accuracy:.4f} ({result.correct}/{result.total})", highlight=False)
