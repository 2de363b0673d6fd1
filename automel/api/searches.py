"""``automel.search``: search a data set within a time limit, then refit and export the best model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from automel.api._common import PathLike, listed, optuna_warnings_only
from automel.api.models import Model, load
from automel.api.studies import Leaderboard

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from automel.engine.job import SearchHooks, SearchRun
    from automel.report.page import Report

__all__ = ["SearchResult", "search"]


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
    ``progress``: called with one line per phase and finished trial (:mod:`automel.api.progress`).
    ``hooks``: a user interface's own (the CLI's live view); it replaces ``progress``. Rerunning the same
    call resumes the study.

    Raises :class:`~automel.errors.ConfigError` for a bad option (before anything is written),
    :class:`~automel.errors.DataError` for an unusable data set, :class:`~automel.errors.Interrupted` after
    Ctrl-C (the study is kept; run again to resume).
    """
    from automel.adapt import check_adapt
    from automel.api.progress import search_progress_hooks
    from automel.arguments import check_names, check_search_arguments
    from automel.data.augment.banks import check_folders
    from automel.data.synth import default_corpus
    from automel.engine.budget import DEFAULT_TIME_LIMIT_S, Clock, check_time_limit, parse_duration, quality_named
    from automel.engine.constraints import Constraints
    from automel.engine.job import SearchJob, run_search_job
    from automel.engine.search import SearchOptions
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
                            sampler=sampler, pruner=pruner, encoders=listed(encoders), poolings=listed(poolings),
                            heads=listed(heads), device=device, seed=seed, keep=keep, portfolio=portfolio,
                            deterministic=deterministic, create_dirs=create_dirs,
                            constraints=Constraints(max_params, max_latency_ms), noise=noise_dir, rir=rir_dir,
                            objective=objective,
                            grace_period=GRACE_PERIOD if grace_period is None else grace_period)
    hooks = hooks or search_progress_hooks(progress, trials)
    where = resolve_home(Path(home) if home is not None else None)
    root = Path(data) if data is not None else default_corpus(where, note=hooks.note)
    job = SearchJob(root, where, options, limit_s, chosen, refit=refit, workers=workers, formats=chosen_formats,
                    adapt=adapt)
    with optuna_warnings_only():
        return SearchResult(run_search_job(job, hooks, clock))


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
