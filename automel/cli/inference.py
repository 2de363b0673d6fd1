"""``automel embed``, ``verify`` and ``predict-audio``: a trained model used on audio, feature files and data sets.

Thin commands over :func:`automel.api.load` and its :class:`~automel.api.Model`: they check the options, call
the library and print one line of result. Every output is checked before any work by the one output rule
(:mod:`automel.outputs`: never an input, never inside the model folder or a data set read, never a folder),
then written to a temporary file and renamed, so an error (a missing file, audio that cannot be decoded, a
broken model directory) leaves no partial output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from automel.cli._common import DeviceOption, console, err_console, handle_errors
from automel.outputs import check_output_file

if TYPE_CHECKING:
    from automel.inference import InputItem

ModelArgument = Annotated[Path, typer.Argument(
    help="A run directory or an export (model.safetensors + config.json).", show_default=False)]
InputsArgument = Annotated[list[Path], typer.Argument(
    help="Audio files (wav, flac, ogg; any sample rate), .pt feature files, folders of audio, or HW4 data sets.",
    show_default=False)]


def register(app: typer.Typer) -> None:
    app.command("embed")(handle_errors(embed))
    app.command("verify")(handle_errors(verify))
    app.command("predict-audio", hidden=True)(handle_errors(predict_audio))  # `automel predict MODEL FILES`


def embed(
    model: ModelArgument,
    inputs: InputsArgument,
    out: Annotated[Path, typer.Option(
        help="FILE.npy (ids one a line in FILE.ids.txt) or FILE.safetensors (tensor 'embeddings', "
             "ids in its metadata).", show_default=False)],
    device: DeviceOption = "auto",
) -> None:
    """Write L2-normalised speaker embeddings (the head's embedding layer) of utterances.

    An HW4 data set gives all its utterances, with their feature file names as ids; any other input keeps
    its path (as given) as id.
    """
    from automel.api import load
    from automel.inference import collect_inputs, embedding_format, embedding_ids_path

    kind = embedding_format(out)  # a wrong suffix is refused before any work
    items = collect_inputs(inputs)
    for target in (out, embedding_ids_path(out)) if kind == ".npy" else (out,):
        check_target(target, "--out", model, items, example=f"embeddings{kind}")
    embeddings = load(model, device, progress=say_note).embed(items)
    written = embeddings.save(out, metadata={"model": str(model)})
    console.print(f"wrote {len(items)} embeddings of dimension {embeddings.vectors.shape[1]} → "
                  f"{', '.join(str(p) for p in written)}", highlight=False)


def verify(
    model: ModelArgument,
    trials: Annotated[Path, typer.Argument(
        help="Trial list, one 'label path1 path2' (1 same speaker, 0 different) or 'path1 path2' a line; "
             "paths relative to the list's folder; a path with spaces goes in quotes (\"my clips/a.wav\"), or "
             "separate the fields with tabs.", show_default=False)],
    scores: Annotated[Path | None, typer.Option(
        help="Write each trial's line with its cosine score appended.")] = None,
    device: DeviceOption = "auto",
) -> None:
    """Score a trial list by cosine similarity; with labels, report EER and minDCF (p_target 0.01).

    Without labels and without --scores, the scored lines are printed to stdout.
    """
    from automel.api import load
    from automel.verification import P_TARGET, read_trials, write_scores

    trial_list = read_trials(trials)  # every file it names must exist before any work
    if scores is not None:
        named = [trials, *(p for t in trial_list.trials for p in (t.enroll, t.test))]
        check_output_file(scores, "--scores", inputs=named, inside=[("the model folder", model)], example="scores.txt")
    result = load(model, device, progress=say_note).verify(trial_list)
    if scores is not None:
        write_scores(scores, trial_list, result.scores)
    if result.eer is not None and result.min_dcf is not None:
        count = len(trial_list.trials)
        console.print(f"EER {result.eer:.2%} (threshold {result.eer_threshold:.4f}), "
                      f"minDCF(p_target={P_TARGET:g}) {result.min_dcf:.4f} on {count} trials "
                      f"({result.targets} same-speaker, {count - result.targets} different)", highlight=False)
    elif scores is None:
        for trial, value in zip(trial_list.trials, result.scores, strict=True):
            console.file.write(f"{' '.join(trial.fields)} {value:.6f}\n")
        console.file.flush()
    if scores is not None:
        console.print(f"wrote {len(trial_list.trials)} scores → {scores}", highlight=False)


def predict_audio(
    model_dir: ModelArgument,
    inputs: InputsArgument,
    out: Annotated[Path, typer.Option(
        help="CSV to write: Id,Category,Probability (top-1), then Category2,Probability2, ... up to --top-k.")]
        = Path("output.csv"),
    top_k: Annotated[int, typer.Option("--top-k", min=1,
        help="How many speakers to list per utterance (at most the model's speakers).")] = 1,
    device: DeviceOption = "auto",
) -> None:
    """Predict the speakers of audio files (or .pt features) with the front end the model was trained with."""
    from automel.api import load
    from automel.inference import collect_inputs, write_predictions

    items = collect_inputs(inputs)
    check_target(out, "--out", model_dir, items, example="output.csv")
    loaded = load(model_dir, device, progress=say_note)
    predictions = loaded.predict(items, top_k)
    write_predictions(out, predictions)
    console.print(f"wrote {out} ({len(predictions)} predictions, top {min(top_k, len(loaded.speakers))})",
                  highlight=False)


def check_target(out: Path, option: str, model: Path, items: Sequence[InputItem], example: str | None = None) -> None:
    """The output rule (:mod:`automel.outputs`) for a command that runs ``model`` on ``items``: ``out`` may not
    be one of the input files, nor lie in the model folder or in a data set that the inputs come from."""
    datasets = dict.fromkeys(item.inside for item in items if item.inside is not None)
    check_output_file(out, option, inputs=[item.path for item in items],
                      inside=[("the model folder", model), *(("the data set", root) for root in datasets)],
                      example=example)


def say_note(line: str) -> None:
    """A note on stderr: an input long enough to run in windows (:func:`automel.api.models.windows_line`)."""
    err_console.print(f"note: {escape(line)}", highlight=False, soft_wrap=True)
