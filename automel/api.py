"""automel from Python (a notebook, a script): search a data set, read the leaderboard, load a model, use it.

>>> import automel
>>> result = automel.search(data="my-set", time_limit="10m", progress=print)
>>> result.leaderboard()
>>> model = automel.load(result.path)        # or automel.load("studies/my-set/best")
>>> model.predict("clip.wav")[0].speaker
>>> model.embed(["a.wav", "b.wav"]).vectors  # (2, E), L2-normalised

The ``automel`` commands are thin layers over these same functions. They raise the typed errors of
:mod:`automel.errors` (one line a user can act on) and never print or exit; pass ``progress=print`` to see
a search's progress lines.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from automel.engine.job import SearchHooks, SearchRun
    from automel.engine.leaderboard import LeaderboardRow
    from automel.inference import InputItem, Prediction, SpeakerInference
    from automel.report.page import Report
    from automel.verification import VerificationResult

__all__ = ["Embeddings", "Leaderboard", "Model", "SearchResult", "leaderboard", "load", "search"]

PathLike = str | Path
Inputs = Any  # a path, an array (T, n_mels), or a sequence of them: see Model.predict


def search(data: PathLike | None = None, *, time_limit: str | float | None = None, quality: str = "balanced",
           trials: int = 200, refit: bool = True, study: str | None = None, storage: str | None = None,
           home: PathLike | None = None, encoders: Sequence[str] | None = None,
           poolings: Sequence[str] | None = None, heads: Sequence[str] | None = None, sampler: str = "tpe",
           pruner: str = "asha", portfolio: bool = True, device: str = "auto", seed: int = 0, keep: int = 5,
           steps_per_trial: int | None = None, workers: int = 1, formats: Sequence[str] = (),
           max_params: int | None = None, max_latency_ms: float | None = None, deterministic: bool = False,
           create_dirs: bool = False, grace_period: int | None = None, progress: Callable[[str], None] | None = None,
           hooks: SearchHooks | None = None, adapt: str = "test", noise: PathLike | None = None,
           rir: PathLike | None = None, objective: str | None = None) -> SearchResult:
    """Search encoders, poolings, heads and their parameters within ``time_limit``; refit and export the best.

    ``data``: an HW4 data set folder (default: the embedded synthetic corpus, generated in ``home`` on first
    use, within the time limit). ``time_limit``: ``"90s"``, ``"30m"``, ``"2h"`` or seconds (default 10
    minutes) for the whole job. ``home``: where studies live (default ``$AUTOMEL_HOME`` or ``studies/``).
    ``max_params``/``max_latency_ms``: limits on the returned model (CPU ms per 3 s utterance).
    ``adapt``: ``"test"`` adapts the export's feature and BatchNorm statistics to the data set's unlabelled
    test utterances (and ``automel predict`` then to whatever it predicts), ``"none"`` does not, a folder
    path adapts to the unlabelled data there (:mod:`automel.adapt`).
    ``noise``/``rir``: folders of noise recordings / room impulse responses that ``train.noise_aug`` /
    ``train.reverb_aug`` draw from, converted once with the data set's front end (:mod:`automel.engine.banks`).
    ``objective``: ``"clean"`` ranks trials on validation accuracy; ``"robust"`` on the mean of that and
    the accuracy on seeded copies of the validation utterances heard through another channel and in
    drifting noise (:mod:`automel.train.shift`). Default: a new study's ``"clean"``, an old study's own.
    ``progress``: called with one line per phase and finished trial. ``hooks``: a user interface's own
    (the CLI's live view); it replaces ``progress``. Rerunning the same call resumes the study.

    Raises :class:`~automel.errors.ConfigError` for a bad option (before anything is written),
    :class:`~automel.errors.DataError` for an unusable data set, :class:`~automel.errors.Interrupted` after
    Ctrl-C (the study is kept; run again to resume).
    """
    from automel.adapt import check_adapt
    from automel.arguments import check_names, check_search_arguments
    from automel.data.augment.banks import check_folders
    from automel.data.synth import default_corpus
    from automel.engine.budget import DEFAULT_TIME_LIMIT_S, Clock, check_time_limit, parse_duration, quality_named
    from automel.engine.constraints import Constraints
    from automel.engine.job import SearchJob, run_search_job
    from automel.engine.runner import SearchOptions
    from automel.engine.study import GRACE_PERIOD
    from automel.exporting import require_formats
    from automel.home import resolve_home

    check_search_arguments(locals())  # every argument's type and range, before any work
    chosen_formats = require_formats(check_names(formats, "formats"))  # a bad format fails now, not after the search
    check_adapt(adapt, "adapt")
    noise_dir, rir_dir = (Path(p) if p is not None else None for p in (noise, rir))
    check_folders(noise_dir, rir_dir)  # a missing or empty folder fails now, before the study is touched
    limit_s = DEFAULT_TIME_LIMIT_S if time_limit is None else parse_duration(str(time_limit), "time_limit")
    check_time_limit(limit_s)
    chosen = quality_named(quality)
    clock = Clock(limit_s, chosen, refit=refit)  # the corpus, when it must be generated, counts too
    options = SearchOptions(trials=trials, study=study, storage=storage, steps_per_trial=steps_per_trial,
                            sampler=sampler, pruner=pruner, encoders=_listed(encoders), poolings=_listed(poolings),
                            heads=_listed(heads), device=device, seed=seed, keep=keep, portfolio=portfolio,
                            deterministic=deterministic, create_dirs=create_dirs,
                            constraints=Constraints(max_params, max_latency_ms), noise=noise_dir, rir=rir_dir,
                            objective=objective,
                            grace_period=GRACE_PERIOD if grace_period is None else grace_period)
    hooks = hooks or _progress_hooks(progress, trials)
    where = resolve_home(Path(home) if home is not None else None)
    root = Path(data) if data is not None else default_corpus(where, note=hooks.note)
    job = SearchJob(root, where, options, limit_s, chosen, refit=refit, workers=workers, formats=chosen_formats,
                    adapt=adapt)
    with _optuna_warnings_only():
        return SearchResult(run_search_job(job, hooks, clock))


@contextlib.contextmanager
def _optuna_warnings_only() -> Iterator[None]:
    """Optuna's INFO line per trial repeats the progress lines; its verbosity is restored afterwards."""
    import optuna

    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)


def _config_error(message: str) -> Exception:
    from automel.errors import ConfigError

    return ConfigError(message)


def _listed(names: Sequence[str] | None) -> list[str] | None:
    return [names] if isinstance(names, str) else (list(names) if names else None)


def _progress_hooks(progress: Callable[[str], None] | None, target: int) -> SearchHooks:
    """Plain progress lines for ``progress``: phases, notes and one line per finished trial."""
    import time

    from automel.engine.job import SearchHooks, counted_lines
    from automel.engine.leaderboard import trial_line
    from automel.engine.runner import SearchEvents, is_surplus, state_counts

    if progress is None:
        return SearchHooks()
    say = progress
    started = time.monotonic()

    def on_trial_end(study: optuna.Study, trial: FrozenTrial) -> None:
        if not is_surplus(trial):
            say(trial_line(trial, state_counts(study)["finished"], target, time.monotonic() - started))

    def on_start(study: optuna.Study, steps: int) -> None:
        say(f"search started: study {study.study_name}, {steps} steps per trial")

    events = SearchEvents(on_start=on_start, on_trial_end=on_trial_end)
    return SearchHooks(note=say, aside=say, phase=say, events=events,
                       cache_progress=counted_lines(say, "building the feature cache", "utterances"))


class SearchResult:
    """A finished search: its study, its exported model, and the leaderboard."""

    def __init__(self, run: SearchRun) -> None:
        self.run = run

    @property
    def study(self) -> optuna.Study:
        return self.run.study

    @property
    def path(self) -> Path:
        """The export folder (``<home>/<study>/best``): weights, ``config.json``, ``output.csv``, model card."""
        return self.run.export.path

    @property
    def data(self) -> Path:
        """The data set searched (the embedded corpus's folder when none was given)."""
        return self.run.data

    @property
    def kind(self) -> str:
        """``"trial"``, ``"refit"`` or ``"ensemble"``: what the export holds."""
        return self.run.export.kind

    @property
    def trials(self) -> list[int]:
        """The trials the exported model comes from."""
        return [int(m["trial"]) for m in self.run.export.members]

    @property
    def best_trial(self) -> FrozenTrial:
        return self.run.study.best_trial

    def leaderboard(self, top: int | None = 10) -> Leaderboard:
        return Leaderboard.of(self.run.study, top)

    def pareto_front(self) -> Leaderboard:
        """The accuracy × size Pareto front, smallest model first (``automel export --pareto``)."""
        from automel.engine.leaderboard import front_rows

        return Leaderboard(front_rows(self.run.study))

    def load(self, device: str = "cpu") -> Model:
        return load(self.path, device=device)

    def report(self, out: PathLike) -> Report:
        """Write the HTML report with its PNGs (``automel report``)."""
        from automel.report.page import write_report

        return write_report(self.run.study, self.run.home, Path(out))

    def __repr__(self) -> str:
        return (f"SearchResult(study={self.run.study.study_name!r}, kind={self.kind!r}, trials={self.trials}, "
                f"path='{self.path}', elapsed={self.run.elapsed_s:.0f}s of {self.run.limit_s:.0f}s)")


def leaderboard(study: str | None = None, *, home: PathLike | None = None, storage: str | None = None,
                top: int | None = 10) -> Leaderboard:
    """The leaderboard of an existing study (the only one in ``home`` when ``study`` is not given)."""
    from automel.arguments import check_path, check_text, check_whole
    from automel.engine.runner import load_study
    from automel.home import resolve_home

    check_text(study, "study", optional=True)
    check_text(storage, "storage", optional=True)
    check_whole(top, "top", optional=True)
    loaded = load_study(resolve_home(check_path(home, "home", optional=True)), study, storage)
    return Leaderboard.of(loaded, top)


class Leaderboard(Sequence["LeaderboardRow"]):
    """Completed trials, best first: a sequence of :class:`~automel.engine.leaderboard.LeaderboardRow`, shown
    as a table in a notebook; :meth:`to_dataframe` needs pandas."""

    COLUMNS = ("rank", "trial", "encoder", "pooling", "head", "valid_acc", "steps", "seconds", "n_params", "pareto")

    def __init__(self, rows: Sequence[LeaderboardRow]) -> None:
        self.rows = list(rows)

    @classmethod
    def of(cls, study: optuna.Study, top: int | None = 10) -> Leaderboard:
        from automel.engine.leaderboard import leaderboard_rows

        return cls(leaderboard_rows(study, top))

    @overload
    def __getitem__(self, index: int) -> LeaderboardRow: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[LeaderboardRow]: ...
    def __getitem__(self, index: int | slice) -> LeaderboardRow | Sequence[LeaderboardRow]:
        return self.rows[index]

    def __len__(self) -> int:
        return len(self.rows)

    def to_dicts(self) -> list[dict[str, Any]]:
        return [row.to_json() for row in self.rows]

    def to_dataframe(self) -> Any:
        try:
            import pandas as pd
        except ImportError:
            from automel.errors import ConfigError

            raise ConfigError("Leaderboard.to_dataframe needs pandas: pip install pandas") from None
        return pd.DataFrame([{c: getattr(row, c) for c in self.COLUMNS} for row in self.rows], columns=self.COLUMNS)

    def _cells(self) -> list[list[str]]:
        from automel.engine.leaderboard import format_size

        return [[str(r.rank), str(r.trial), r.encoder, r.pooling, r.head, f"{r.valid_acc:.2%}",
                 "" if r.steps is None else str(r.steps), "" if r.seconds is None else f"{r.seconds:.0f}",
                 format_size(r.n_params), "*" if r.pareto else ""] for r in self.rows]

    def __str__(self) -> str:
        lines = [list(self.COLUMNS), *self._cells()]
        widths = [max(len(line[i]) for line in lines) for i in range(len(self.COLUMNS))]
        return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
                         for line in lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.COLUMNS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"
                       for cells in self._cells())
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass(frozen=True)
class Embeddings:
    """L2-normalised speaker embeddings ``vectors (N, E)``, one per id, in the order of the inputs."""

    ids: list[str]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.vectors if dtype is None else self.vectors.astype(dtype)

    def save(self, out: PathLike) -> list[Path]:
        """Write ``FILE.npy`` (+ ``FILE.ids.txt``) or ``FILE.safetensors``, as ``automel embed`` does."""
        from automel.arguments import check_path
        from automel.inference import embedding_format, write_embeddings

        path = check_path(out, "out") or Path(out)
        embedding_format(path)
        return write_embeddings(path, self.ids, self.vectors)


def load(path: PathLike, device: str = "cpu") -> Model:
    """A model folder (an export, a run directory or an ensemble) ready to predict and embed.

    :class:`~automel.errors.ConfigError` naming a missing or corrupt file.
    """
    from automel.arguments import check_path, check_text
    from automel.inference import SpeakerInference
    from automel.train.device import select_device

    folder = check_path(path, "path") or Path(path)
    return Model(SpeakerInference.load(folder, select_device(check_text(device, "device") or device)))


class Model:
    """A trained speaker model. Inputs are audio files (wav, flac, ogg; any sample rate), ``.pt`` feature
    files, folders of audio, HW4 data sets, or features ``(T, n_mels)`` as a NumPy array or tensor; or a
    list of these. Audio goes through the front end the model was trained with."""

    def __init__(self, inference: SpeakerInference) -> None:
        self.inference = inference

    @property
    def path(self) -> Path:
        return self.inference.source

    @property
    def speakers(self) -> tuple[str, ...]:
        return self.inference.speakers

    @property
    def config(self) -> dict[str, Any]:
        """The encoder, pooling, head and training parameters (``config.json``'s ``params``)."""
        return dict(self.inference.record.params)

    def predict(self, inputs: Inputs, top_k: int = 1) -> list[Prediction]:
        """The ``top_k`` most probable speakers of each utterance: ``predictions[i].speaker`` is the best."""
        return self.inference.predict(_items(inputs), top_k)

    def predict_proba(self, inputs: Inputs) -> np.ndarray:
        """Probabilities ``(N, len(speakers))``, rows in input order, columns in :attr:`speakers` order."""
        return self.inference.predict_proba(_items(inputs))

    def embed(self, inputs: Inputs) -> Embeddings:
        items = _items(inputs)
        return Embeddings([item.id for item in items], self.inference.embed(items))

    def verify(self, trials: PathLike) -> VerificationResult:
        """Score a VoxCeleb-style trial list (``label path1 path2`` a line): EER and minDCF when labelled."""
        from automel.arguments import check_path
        from automel.verification import read_trials, verify

        return verify(self.inference, read_trials(check_path(trials, "trials") or Path(trials)))

    def export(self, formats: Sequence[str], out: PathLike | None = None) -> dict[str, Path]:
        """Write ``model.onnx`` and/or ``model.ts`` into ``out`` (default: the model's folder)."""
        from automel.arguments import check_names, check_path
        from automel.exporting import describe, export_model, require_formats

        chosen = require_formats(check_names(formats, "formats"))  # "onnx" is one format, not four letters
        if not chosen:
            raise _config_error("formats names no format; give 'onnx' and/or 'torchscript'")
        folder = check_path(out, "out", optional=True) or self.path
        record = self.inference.record
        return export_model(self.inference.model, folder, chosen, record.n_mels,
                            what=f"{self.path} ({describe(record.params)})")

    def __repr__(self) -> str:
        params = self.inference.record.params
        return (f"Model('{self.path}': {params.get('encoder')}/{params.get('pooling')}/{params.get('head')}, "
                f"{len(self.speakers)} speakers)")


def _items(inputs: Inputs) -> list[InputItem]:
    """One input or a list (or tuple) of them, as :func:`automel.inference.collect_inputs` takes them;
    :class:`DataError` for anything else (None, a number, a dict), naming what was given."""
    import os

    import torch

    from automel.errors import DataError
    from automel.inference import collect_inputs

    if isinstance(inputs, str | os.PathLike | np.ndarray | torch.Tensor):
        return collect_inputs([inputs])
    if isinstance(inputs, list | tuple):
        return collect_inputs(list(inputs))
    raise DataError(f"inputs must be a path, a NumPy array or tensor (T, n_mels), or a list of them; "
                    f"got {type(inputs).__name__}")
