"""``automel train``, ``predict`` and ``score``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from automel.cli._common import (
    DataOption,
    DeterministicOption,
    DeviceOption,
    HomeOption,
    console,
    err_console,
    handle_errors,
    resolve_data,
    warn_plugin_failures,
)
from automel.errors import ConfigError


def register(app: typer.Typer) -> None:
    app.command("train")(handle_errors(train))
    app.command("predict")(handle_errors(predict))
    app.command("score")(handle_errors(score))


def train(
    preset: Annotated[str | None, typer.Option(help="simple | medium | hard | boss (the course's levels).")] = None,
    config: Annotated[Path | None, typer.Option(
        help="JSON of trial parameters, or a run's/export's config.json.")] = None,
    data: DataOption = None,
    steps: Annotated[int, typer.Option(min=1, help="Training steps.")] = 2000,
    valid_every: Annotated[int, typer.Option(min=1, help="Validate every N steps.")] = 200,
    out: Annotated[Path | None, typer.Option(help="Run directory [default: <home>/runs/<name>-<time>].")] = None,
    device: DeviceOption = "auto",
    seed: Annotated[int, typer.Option(help="Seed for initialisation, batches and the split.")] = 0,
    compile_model: Annotated[bool, typer.Option("--compile",
        help="torch.compile the model (worth it for long GPU runs).")] = False,
    deterministic: DeterministicOption = False,
    home: HomeOption = None,
) -> None:
    """Train one model and write a run directory (weights, config, metrics, output.csv)."""
    from automel.cli._progress import add_training_task, progress_hook, training_progress
    from automel.home import resolve_home
    from automel.runs import write_run_dir
    from automel.train.config import RunSettings
    from automel.train.device import select_device
    from automel.train.run import metrics_lines, open_workspace, test_submission, train_run

    warn_plugin_failures()
    params = _load_params(preset, config)
    settings = RunSettings(steps=steps, valid_every=valid_every, seed=seed, compile=compile_model,
                           deterministic=deterministic)
    torch_device = select_device(device)
    root = resolve_data(data, home)
    work = open_workspace(root, resolve_home(home), split_seed=seed)
    name = preset or (config.stem if config else "simple")
    target = out or resolve_home(home) / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"{target}: already exists and is not empty; choose another --out")
    dataset = work.store.dataset
    console.print(f"Training [bold]{escape(name)}[/] on {escape(dataset.name)} \\[{dataset.kind}] "
                  f"({len(work.split.train)} train / {len(work.split.valid)} valid utterances) on {torch_device}",
                  highlight=False)
    with training_progress(console=err_console) as progress:
        task = add_training_task(progress, name, steps)
        model, result, record = train_run(params, work, settings, torch_device,
                                          on_progress=progress_hook(progress, task))
    rows = test_submission(model, work.store, record.speakers) if work.store.dataset.test else None
    run_dir = write_run_dir(target, model.state_dict(), record, metrics_lines(result), rows)
    console.print(f"best valid accuracy [bold]{result.best_valid_acc:.2%}[/] at step {result.best_step} "
                  f"({result.seconds:.0f} s) → {run_dir}", highlight=False)


def _load_params(preset: str | None, config: Path | None) -> dict[str, Any]:
    from automel.presets import preset_params

    params: dict[str, Any] = preset_params(preset or "simple") if preset or not config else {}
    if config is not None:
        try:
            data = json.loads(config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{config}: file not found") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{config}: must hold a JSON object of parameters")
        params.update(data.get("params", data) if data.get("format") else data)
    return params


def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory or an export.")],
    data: Annotated[Path | None, typer.Option(
        help="Data set whose testdata.json to predict [default: the run's].")] = None,
    out: Annotated[Path, typer.Option(help="Submission file to write.")] = Path("output.csv"),
    device: DeviceOption = "auto",
    home: HomeOption = None,
) -> None:
    """Write an HW4 submission (Id,Category) for a data set's test utterances."""
    from automel.data.store import open_store
    from automel.home import resolve_home
    from automel.runs import check_compatible, load_run, write_submission_rows
    from automel.train.device import select_device
    from automel.train.run import test_submission

    model, record = load_run(run_dir)
    root = data or Path(record.dataset.get("root", ""))
    if data is None and not root.is_dir():
        raise ConfigError(f"{run_dir}: its data set {root} is gone; pass --data")
    store = open_store(root, resolve_home(home))
    check_compatible(record, store.n_mels, root)
    if not store.dataset.test:
        raise ConfigError(f"{root}: has no test utterances (testdata.json) to predict")
    rows = test_submission(model, store, record.speakers, select_device(device))
    write_submission_rows(out, rows)
    console.print(f"wrote {out} ({len(rows)} predictions)", highlight=False)


def score(
    submission: Annotated[Path, typer.Argument(help="A submission CSV (Id,Category).")],
    answers: Annotated[Path, typer.Argument(help="The answer key CSV (Id,Category).")],
) -> None:
    """Accuracy of a submission against an answer key."""
    from automel.score import score_submission

    result = score_submission(submission, answers)
    console.print(f"accuracy {result.accuracy:.4f} ({result.correct}/{result.total})", highlight=False)
