"""``automel data check|prepare|synth``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from automel.cli._common import console, err_console, handle_errors, seed_option
from automel.cli._output import print_table

app = typer.Typer(help="Check, prepare and generate data sets in the HW4 layout.", no_args_is_help=True)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
        console=err_console, transient=True,
    )


@app.command("check")
@handle_errors
def check(directory: Annotated[Path, typer.Argument(help="A data set in the HW4 layout.")]) -> None:
    """Validate every file of a data set and summarise it. Exit 0 when valid, 2 with one line per problem."""
    from automel.data.check import check_dataset

    with _progress() as progress:
        task = progress.add_task("Checking features", total=None)
        report = check_dataset(directory, on_progress=lambda done, total: progress.update(task, completed=done,
                                                                                             total=total))
    print_table(_summary_table(report))
    for warning in report.warnings:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if report.problems:
        for problem in report.problems:
            err_console.print(f"[red]problem:[/] {escape(problem)}", highlight=False, soft_wrap=True)
        err_console.print(f"[bold red]{len(report.problems)} problem(s) in {directory}[/]", highlight=False)
        raise typer.Exit(2)
    console.print(f"[green]valid:[/] {escape(str(directory))}", highlight=False, soft_wrap=True)


def _summary_table(report: object) -> Table:
    from automel.data.check import CheckReport

    assert isinstance(report, CheckReport)
    table = Table(title=escape(f"{report.root} ({report.kind})"), show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in report.summary_rows():
        table.add_row(key, escape(value))
    return table


@app.command("prepare")
@handle_errors
def prepare(
    src: Annotated[Path | None, typer.Argument(
        help="Audio folder: one folder per speaker, or flat with --speaker-regex.")] = None,
    out: Annotated[Path | None, typer.Argument(help="New output folder for the HW4-layout data set.")] = None,
    test_per_speaker: Annotated[int, typer.Option(min=0,
        help="Utterances per speaker held out into testdata.json.")] = 2,
    manifest: Annotated[Path | None, typer.Option(help="CSV 'path,speaker[,split]' instead of scanning SRC.")] = None,
    speaker_regex: Annotated[str | None, typer.Option(
        help=r"Regex whose group 1 is the speaker, e.g. '^\d+_([a-z]+)_\d+\.wav$'.")] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Parallel decoding processes.")] = 1,
    seed: Annotated[int, seed_option("Seed for choosing held-out test utterances.")] = 0,
) -> None:
    """Turn real audio (WAV/FLAC/OGG, any rate) into an HW4-layout data set of 40-bin log-mel fbank."""
    from automel.data.prepare import prepare_dataset
    from automel.errors import ConfigError

    if out is None and src is not None and manifest is not None:
        src, out = None, src  # `prepare --manifest FILE OUT`: the one argument is OUT
    if out is None:
        raise ConfigError("missing OUT: give the output folder (automel data prepare SRC OUT)")
    with _progress() as progress:
        task = progress.add_task("Extracting fbank", total=None)
        report = prepare_dataset(
            src, out, test_per_speaker=test_per_speaker, manifest=manifest, speaker_regex=speaker_regex,
            jobs=jobs, seed=seed,
            on_progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    console.print(
        f"[green]wrote[/] {report.out}: {report.speakers} speakers, {report.train_utterances} training and "
        f"{report.test_utterances} test utterances (answers in answers.csv)", highlight=False,
    )
    if report.skipped:
        table = Table(title=f"Skipped {len(report.skipped)} file(s)", title_justify="left")
        table.add_column("file")
        table.add_column("reason")
        for path, reason in report.skipped:
            table.add_row(escape(str(path)), escape(reason))
        print_table(table)


@app.command("synth")
@handle_errors
def synth(
    out: Annotated[Path, typer.Argument(help="New output folder.")],
    speakers: Annotated[int, typer.Option(min=2, help="Number of synthetic speakers.")] = 64,
    utterances: Annotated[int, typer.Option(min=2, help="Utterances per speaker (train + test).")] = 40,
    seed: Annotated[int, seed_option("Seed: the same seed gives the same corpus.")] = 0,
    test_per_speaker: Annotated[int, typer.Option(min=0,
        help="Utterances per speaker held out into testdata.json.")] = 4,
) -> None:
    """Generate the synthetic multi-speaker corpus (source-filter voices) in the HW4 layout."""
    from automel.data.synth import SynthSpec, generate_corpus

    spec = SynthSpec(speakers=speakers, utterances=utterances, seed=seed, test_per_speaker=test_per_speaker)
    with _progress() as progress:
        task = progress.add_task("Synthesising", total=None)
        path = generate_corpus(out, spec, on_progress=lambda d, t: progress.update(task, completed=d, total=t))
    console.print(f"[green]wrote[/] synthetic corpus {path} ({speakers} speakers × {utterances} utterances)",
                  highlight=False)
