"""A study after (or during) its search: the leaderboard, an overview of every trial, and the HTML report.

Studies are opened by name through :class:`automel.engine.handle.StudyHandle` (the one code that knows where
a study lives): ``study=None`` means the only study of ``home``.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from automel.api._common import PathLike, optuna_warnings_only

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from automel.engine.handle import StudyHandle
    from automel.engine.leaderboard import LeaderboardRow
    from automel.report.page import Report

__all__ = ["Leaderboard", "StudyOverview", "TrialSummary", "leaderboard", "open_study", "report", "show"]


def open_study(study: str | None, home: PathLike | None, storage: str | None) -> tuple[StudyHandle, optuna.Study]:
    """Study ``study`` of ``home`` (the only one there when None) with its handle, read without creating
    anything; :class:`~automel.errors.StudyError` naming what is missing."""
    from automel.arguments import check_path, check_text
    from automel.engine.handle import StudyHandle
    from automel.home import resolve_home

    check_text(study, "study", optional=True)
    check_text(storage, "storage", optional=True)
    handle = StudyHandle.find(resolve_home(check_path(home, "home", optional=True)), study, storage)
    return handle, handle.load()


def leaderboard(study: str | None = None, *, home: PathLike | None = None, storage: str | None = None,
                top: int | None = 10) -> Leaderboard:
    """The leaderboard of an existing study (the only one in ``home`` when ``study`` is not given)."""
    from automel.arguments import check_whole

    check_whole(top, "top", optional=True)
    _, loaded = open_study(study, home, storage)
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
class TrialSummary:
    """One trial of a study as ``automel show --format json`` lists it: values whole (accuracy a fraction,
    times in seconds, parameters as the study stored them); ``rank`` only for a completed trial."""

    rank: int | None
    trial: int
    state: str  # COMPLETE, PRUNED, FAIL, RUNNING or WAITING
    valid_acc: float | None
    steps: int | None
    seconds: float | None
    n_params: int | None
    latency_ms: float | None
    pareto: bool
    started: str | None  # ISO 8601, to the second
    completed: str | None
    fail_reason: str | None
    pruned_reason: str | None
    params: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


NO_REASON = "no reason recorded"


@dataclass(frozen=True)
class StudyOverview:
    """What ``automel show`` prints of a study: the leaderboard, the parameter importances (None with fewer
    than two completed trials), the trials by state, and every trial (:class:`TrialSummary`) in leaderboard
    order: completed ones by accuracy, then the rest by number. Surplus trials (started after the study held
    its target) are left out, as in the counts."""

    study: str
    direction: str
    leaderboard: Leaderboard
    importances: dict[str, float] | None
    counts: dict[str, int]
    trials: list[TrialSummary]

    @property
    def pruned(self) -> list[TrialSummary]:
        return [t for t in self.trials if t.state == "PRUNED"]

    @property
    def failed(self) -> list[TrialSummary]:
        """The failed trials by number, each with its ``fail_reason``."""
        return [t for t in self.trials if t.state == "FAIL"]

    def failure_lines(self) -> list[str]:
        """``trial 3 failed: <reason>``, one per failed trial."""
        return [f"trial {t.trial} failed: {t.fail_reason if t.fail_reason is not None else NO_REASON}"
                for t in self.failed]

    def to_json(self) -> dict[str, Any]:
        """``automel show --format json``'s document."""
        return {"study": self.study, "direction": self.direction, "trials": [t.to_json() for t in self.trials],
                "importances": self.importances}

    def __str__(self) -> str:
        parts = [str(self.leaderboard)]
        if self.importances is None:
            parts.append("parameter importances need at least two completed trials")
        else:
            parts += ["parameter importances:", *(f"  {name}  {value:.3f}" for name, value in self.importances.items())]
        parts.append(f"pruned: {self.counts['pruned']}   failed: {self.counts['fail']}")
        parts += [f"  {line}" for line in self.failure_lines()]
        return "\n".join(parts)


def show(study: str | None = None, *, home: PathLike | None = None, storage: str | None = None,
         top: int | None = 10) -> StudyOverview:
    """An overview of an existing study (the only one in ``home`` when ``study`` is not given): its best
    ``top`` trials, importances, counts and every trial with its full parameters (``automel show``)."""
    from automel.arguments import check_whole
    from automel.engine.counting import state_counts

    check_whole(top, "top", optional=True)
    _, loaded = open_study(study, home, storage)
    with optuna_warnings_only():
        return StudyOverview(study=loaded.study_name, direction=loaded.direction.name.lower(),
                             leaderboard=Leaderboard.of(loaded, top), importances=importances(loaded),
                             counts=state_counts(loaded), trials=trial_summaries(loaded))


def trial_summaries(study: optuna.Study) -> list[TrialSummary]:
    """Every trial in leaderboard order (completed ones by accuracy, ranked; then the rest by number);
    surplus trials are left out."""
    from optuna.trial import TrialState

    from automel.engine.counting import is_surplus
    from automel.engine.leaderboard import front_rows

    trials = [t for t in study.get_trials(deepcopy=False) if not is_surplus(t)]
    ranked = sorted((t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
                    key=lambda t: (-(t.value or 0.0), t.number))
    numbers = {t.number for t in ranked}
    front = {row.trial for row in front_rows(study)}
    rest = sorted((t for t in trials if t.number not in numbers), key=lambda t: t.number)
    return ([_summary(t, rank, t.number in front) for rank, t in enumerate(ranked, 1)]
            + [_summary(t, None, False) for t in rest])


def _summary(trial: FrozenTrial, rank: int | None, pareto: bool) -> TrialSummary:
    from optuna.trial import TrialState

    from automel.engine.constraints import LATENCY_ATTR, PARAMS_ATTR

    attrs = trial.user_attrs
    return TrialSummary(
        rank=rank, trial=trial.number, state=trial.state.name, valid_acc=trial.value,
        steps=attrs.get("steps", trial.last_step), seconds=attrs.get("seconds"), n_params=attrs.get(PARAMS_ATTR),
        latency_ms=attrs.get(LATENCY_ATTR), pareto=pareto,
        started=trial.datetime_start.isoformat(timespec="seconds") if trial.datetime_start else None,
        completed=trial.datetime_complete.isoformat(timespec="seconds") if trial.datetime_complete else None,
        fail_reason=attrs.get("fail_reason") if trial.state == TrialState.FAIL else None,
        pruned_reason=attrs.get("pruned_reason") if trial.state == TrialState.PRUNED else None,
        params=dict(trial.params))


def importances(study: optuna.Study) -> dict[str, float] | None:
    """Parameter importances (Optuna's default evaluator); None with fewer than two completed trials."""
    import optuna
    from optuna.trial import TrialState

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return None
    with warnings.catch_warnings():  # one "may be inaccurate" warning per parameter of a small study
        warnings.filterwarnings("ignore", message="Some regimes for parameter", category=UserWarning)
        found = optuna.importance.get_param_importances(study)
    return {name: float(value) for name, value in found.items()}


def report(study: str | None, out: PathLike, *, home: PathLike | None = None, storage: str | None = None,
           data: PathLike | None = None, device: str = "auto") -> Report:
    """Write the HTML report of an existing study (the only one in ``home`` when ``study`` is None) to ``out``,
    with a PNG of each plot beside it (``<out stem>-<plot>.png``), as ``automel report`` does.

    The plots: history, importances, accuracy by plugin, every trial's curve, and the exported model's errors
    on the study's validation utterances (computed on ``device``, from ``data`` if the data set moved). The
    returned :class:`~automel.report.page.Report` lists the files, the figures drawn and, in ``notes``, why any
    other is missing. :class:`~automel.errors.ConfigError` for an ``out`` that cannot be written (checked before
    the study is read), :class:`~automel.errors.StudyError` for a missing study or one with no complete trial.
    """
    from automel.arguments import check_path, check_text
    from automel.report import check_out, write_report
    from automel.train.device import select_device

    target = check_out(check_path(out, "out") or Path(out))  # a missing folder fails before the study is read
    data_root = check_path(data, "data", optional=True)
    chosen = select_device(check_text(device, "device") or device)
    handle, loaded = open_study(study, home, storage)
    with optuna_warnings_only():
        return write_report(loaded, handle.home, target, data_root=data_root, device=chosen)
