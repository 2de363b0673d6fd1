"""``automel.api.train``: train one model from a preset or a configuration and write its run directory.

A run directory holds the weights, ``config.json`` (everything needed to rebuild the model), ``metrics.jsonl``
and, when the data set has test utterances, the submission ``output.csv`` (:mod:`automel.model_folder`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automel.api._common import PathLike, check_callback, nothing
from automel.api.models import Model, load

if TYPE_CHECKING:
    from automel.model_config import ModelConfig
    from automel.train.config import RunSettings
    from automel.train.fit import Workspace

__all__ = ["DEFAULT_STEPS", "TIMED_MAX_STEPS", "TrainHooks", "TrainPlan", "TrainRun", "finish_reserve_s",
           "train", "train_params"]

DEFAULT_STEPS = 2000
TIMED_MAX_STEPS = 1_000_000  # with a time limit and no step count: the clock ends the run
MAX_LARGE_MARGIN = 0.9

Counted = Callable[[int, int], None]  # (done, total) utterances of a feature-cache build
StepHook = Callable[[int, dict[str, float]], None]  # (step, metrics) every few steps, valid_acc when validated


@dataclass(frozen=True)
class TrainPlan:
    """What is about to train: told to :attr:`TrainHooks.start` before the first step."""

    name: str  # the preset, the configuration file's stem, or "config"
    dataset: str
    kind: str  # the data set's kind (hw4, librispeech, ...)
    train_utterances: int
    valid_utterances: int
    device: str
    steps: int | None  # None: as many as the time limit allows
    time_limit_s: float | None
    out: Path

    def __str__(self) -> str:
        return (f"training {self.name} on {self.dataset} [{self.kind}] ({self.train_utterances} train / "
                f"{self.valid_utterances} valid utterances) on {self.device}")


def _no_counts() -> AbstractContextManager[Counted]:
    return contextlib.nullcontext(nothing)


def _no_steps(plan: TrainPlan) -> AbstractContextManager[StepHook | None]:
    return contextlib.nullcontext(None)


@dataclass
class TrainHooks:
    """What a user interface sees of a training run; every hook is optional.

    ``note``: lines worth showing (the embedded corpus being generated, what a ``noise``/``rir`` bank holds);
    ``caching``: a context around opening the data set, giving the ``(done, total)`` reporter of a first
    feature-cache build; ``start``: the plan, once the data set is open and the output checked; ``training``:
    a context around the training, giving the ``(step, metrics)`` hook (or None).
    """

    note: Callable[[str], None] = nothing
    caching: Callable[[], AbstractContextManager[Counted]] = _no_counts
    start: Callable[[TrainPlan], None] = nothing
    training: Callable[[TrainPlan], AbstractContextManager[StepHook | None]] = _no_steps


def progress_hooks(progress: Callable[[str], None] | None) -> TrainHooks:
    """Plain lines for ``progress``: notes, a first feature-cache build, the plan, and each validation."""
    from automel.api.progress import step_line
    from automel.engine.job import counted_lines

    if progress is None:
        return TrainHooks()
    say = progress

    @contextlib.contextmanager
    def training(plan: TrainPlan) -> Any:
        def on_step(step: int, metrics: dict[str, float]) -> None:
            if "valid_acc" in metrics:
                say(step_line(step, plan.steps, metrics))

        yield on_step

    return TrainHooks(note=say, caching=lambda: contextlib.nullcontext(
        counted_lines(say, "building the feature cache", "utterances")), start=lambda plan: say(str(plan)),
        training=training)


@dataclass(frozen=True)
class TrainRun:
    """A finished training run: its run directory, its score, and what was planned against what ran."""

    path: Path  # the run directory
    plan: TrainPlan
    valid_acc: float  # the best validation accuracy (training accuracy when ``scored_on`` is "train")
    scored_on: str  # "valid", or "train" when every speaker has one utterance (nothing to hold out)
    best_step: int
    steps: int  # steps that ran
    planned_steps: int
    schedule: str  # "steps", or "clock" when the time limit set the learning rate's decay
    annealed: bool  # the learning rate had decayed to (nearly) zero by the last step
    seconds: float  # of training
    elapsed_s: float  # of the whole call: data set, training, test predictions, files
    record: ModelConfig = field(repr=False)

    @property
    def submission(self) -> Path | None:
        """``output.csv``, the test utterances' predictions, when the data set has test utterances."""
        from automel.submission import SUBMISSION

        path = self.path / SUBMISSION
        return path if path.is_file() else None

    @property
    def ended_by_time_limit(self) -> bool:
        return self.schedule == "clock"

    def load(self, device: str = "cpu") -> Model:
        return load(self.path, device=device)


def finish_reserve_s(limit_s: float) -> float:
    """Set aside from a timed run for the test predictions and the files: the search's export reserve."""
    from automel.engine.budget import EXPORT_RESERVE_S, EXPORT_RESERVE_SHARE

    return EXPORT_RESERVE_S + EXPORT_RESERVE_SHARE * limit_s


def train(preset: str | None = None, config: PathLike | Mapping[str, Any] | None = None,
          data: PathLike | None = None, *, steps: int | None = None, time_limit: str | float | None = None,
          valid_every: int = 200, out: PathLike | None = None, device: str = "auto", seed: int = 0,
          compile: bool = False, deterministic: bool = False, noise: PathLike | None = None,
          rir: PathLike | None = None, large_margin: float = 0.0, average: int = 8, home: PathLike | None = None,
          progress: Callable[[str], None] | None = None, hooks: TrainHooks | None = None) -> TrainRun:
    """Train one model and write its run directory (weights, ``config.json``, ``metrics.jsonl``, ``output.csv``).

    ``preset``: ``simple``, ``medium``, ``hard`` or ``boss`` (default ``simple`` unless ``config`` is given);
    ``config``: a JSON file of trial parameters (or a run's or export's ``config.json``), or those parameters
    as a dict, laid over the preset. ``data``: an HW4 data set folder (default: the embedded synthetic corpus,
    generated in ``home`` on first use). ``steps``: training steps (default 2000; with ``time_limit``, as
    many as the time allows). ``time_limit``: ``"90s"``, ``"30m"``, ``"2h"`` or seconds for the whole call;
    the learning rate decays to zero by then. ``out``: the run directory (default
    ``<home>/runs/<name>-<time>``; it must not exist or be empty). ``noise``/``rir``: folders that
    ``train.noise_aug``/``train.reverb_aug`` draw from. ``large_margin``: the fraction of the run, at its
    end, trained on longer crops with a larger margin. ``average``: snapshots of the schedule's tail to
    average. ``progress``: called with one line per note and validation; ``hooks``: a user interface's own
    (the CLI's progress bars); it replaces ``progress``.

    Raises :class:`~automel.errors.ConfigError` for a bad option or configuration (before anything is
    written), :class:`~automel.errors.DataError` for an unusable data set, and
    :class:`~automel.errors.PluginError` for a configuration naming an unknown plugin.
    """
    from automel.arguments import check_flag, check_number, check_path, check_seed, check_text, check_whole
    from automel.data.augment.banks import check_folders
    from automel.engine.budget import check_time_limit, parse_duration
    from automel.errors import ConfigError
    from automel.home import resolve_home
    from automel.model_folder import write_run_dir
    from automel.outputs import check_output_folder
    from automel.train.config import RunSettings
    from automel.train.device import select_device
    from automel.train.fit import metrics_lines, open_workspace, test_submission, train_run

    started = time.monotonic()
    check_text(preset, "preset", optional=True)
    data_root, target, home_dir, noise_dir, rir_dir = (check_path(value, name, optional=True) for value, name in (
        (data, "data"), (out, "out"), (home, "home"), (noise, "noise"), (rir, "rir")))
    check_whole(steps, "steps", optional=True)
    check_whole(valid_every, "valid_every")
    check_seed(seed, "seed")
    check_flag(compile, "compile")
    check_flag(deterministic, "deterministic")
    margin = check_number(large_margin, "large_margin", positive=False) or 0.0
    if not 0.0 <= margin <= MAX_LARGE_MARGIN:
        raise ConfigError(f"`large_margin` must be a fraction of the run from 0 to {MAX_LARGE_MARGIN}, "
                          f"got {large_margin!r}")
    check_whole(average, "average", least=0)
    check_text(device, "device")
    check_callback(progress, "progress")
    limit_s = None if time_limit is None else parse_duration(time_limit, "time_limit")
    if limit_s is not None:
        check_time_limit(limit_s)
    params = train_params(preset, config)
    check_folders(noise_dir, rir_dir)  # a missing or empty folder fails now, before any work
    hooks = hooks or progress_hooks(progress)
    planned = steps or (DEFAULT_STEPS if limit_s is None else TIMED_MAX_STEPS)
    deadline = None if limit_s is None else started + limit_s - finish_reserve_s(limit_s)
    settings = RunSettings(steps=planned, valid_every=valid_every, seed=seed, compile=compile,
                           deterministic=deterministic, deadline=deadline, large_margin=margin,
                           average=average)
    torch_device = select_device(device)
    where = resolve_home(home_dir)
    root = data_root if data_root is not None else _default_corpus(where, hooks.note)
    with hooks.caching() as cache_progress:
        work = open_workspace(root, where, split_seed=seed, on_progress=cache_progress)
    settings = _with_banks(settings, params, noise_dir, rir_dir, work, where, hooks.note)
    name = preset or (("config" if isinstance(config, Mapping) else Path(config).stem) if config else "simple")
    target = target or where / "runs" / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    check_output_folder(target, "out", inside=[("the data set", root)])  # a file in the way: one line, at once
    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"{target}: already exists and is not empty; choose another `out`")
    dataset = work.store.dataset
    plan = TrainPlan(name=name, dataset=dataset.name, kind=dataset.kind, train_utterances=len(work.split.train),
                     valid_utterances=len(work.split.valid), device=str(torch_device),
                     steps=None if planned == TIMED_MAX_STEPS else planned, time_limit_s=limit_s, out=target)
    hooks.start(plan)
    with hooks.training(plan) as on_step:
        model, result, record = train_run(params, work, settings, torch_device, on_progress=on_step)
    rows = test_submission(model, work.store, record.speakers) if dataset.test else None
    run_dir = write_run_dir(target, model.state_dict(), record, metrics_lines(result), rows)
    return TrainRun(path=run_dir, plan=plan, valid_acc=result.best_valid_acc, scored_on=work.scored_on,
                    best_step=result.best_step, steps=result.steps, planned_steps=result.planned_steps,
                    schedule=result.schedule, annealed=result.annealed, seconds=result.seconds,
                    elapsed_s=time.monotonic() - started, record=record)


def train_params(preset: str | None, config: PathLike | Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters of a run: ``preset``'s (``simple`` when neither is given), with ``config``'s laid over
    them: a JSON file of parameters, a run's or export's ``config.json`` (its ``params``), or a dict of either."""
    from automel.errors import ConfigError
    from automel.presets import preset_params

    params: dict[str, Any] = preset_params(preset or "simple") if preset or not config else {}
    if config is None:
        return params
    if isinstance(config, Mapping):
        source, given = "`config`", dict(config)
    else:
        from automel.arguments import check_path
        from automel.userjson import read_user_json

        path = check_path(config, "config") or Path(config)
        if path.is_dir():
            raise ConfigError(f"{path}: cannot read a folder; give `config` a JSON file of parameters")
        source, given = str(path), read_user_json(path, ConfigError)  # depth, integer and string limits: one line
        if not isinstance(given, dict):
            raise ConfigError(f"{path}: must hold a JSON object of parameters")
    inner = given.get("params", given) if given.get("format") else given
    if not isinstance(inner, dict):
        raise ConfigError(f"{source}: 'params' must be a JSON object of parameters")
    params.update(inner)
    return params


def _default_corpus(home: Path, note: Callable[[str], None]) -> Path:
    from automel.data.synth import default_corpus

    return default_corpus(home, note=note)


def _with_banks(settings: RunSettings, params: Mapping[str, Any], noise: Path | None, rir: Path | None,
                work: Workspace, home: Path, note: Callable[[str], None]) -> RunSettings:
    """``settings`` with the converted banks of ``noise`` and ``rir`` (converted now, or from the cache); says
    what each bank holds, and when the level that would use it is off."""
    from automel.data.augment.banks import NOISE, RIR, bank_note, prepare_bank
    from automel.data.augment.mel import FrontEnd
    from automel.train.config import TrainParams

    if noise is None and rir is None:
        return settings
    train_params = TrainParams.from_params(params)
    frontend = FrontEnd.of(work.store.dataset.info, work.store.n_mels)
    arrays: dict[str, str] = {}
    for kind, folder, level, knob in ((NOISE, noise, train_params.noise_aug, "train.noise_aug"),
                                      (RIR, rir, train_params.reverb_aug, "train.reverb_aug")):
        if folder is None:
            continue
        bank = prepare_bank(kind, folder, frontend, home)
        arrays[kind] = str(bank.array)
        unused = f"; {knob} is off, so it is not used" if level == "off" else ""
        note(bank_note(bank) + unused)
    return dataclasses.replace(settings, noise_bank=arrays.get(NOISE), rir_bank=arrays.get(RIR))
