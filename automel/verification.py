"""Speaker verification: trial lists, cosine scoring, EER and minDCF.

A trial list is VoxCeleb's text format, one trial a line: ``label path1 path2`` (label 1: same speaker,
0: different speakers) or ``path1 path2`` without labels, whitespace-separated; blank lines and lines
starting with ``#`` are skipped. Paths are absolute or relative to the list's folder, and may be audio
files or ``.pt`` feature files (see :mod:`automel.inference`). A path with spaces is written in quotes
(``1 "my clips/a.wav" b.wav``, shell-style, backslashes kept as they are) or the line's fields are
separated by tabs (a line holding a tab is split at tabs only).

A trial's score is the cosine similarity of the two utterances' embeddings. From the scores and labels:

- EER, the equal error rate: where the miss rate equals the false-alarm rate, linearly interpolated
  between the two neighbouring operating points of the ROC (so ties and small lists give exact values);
- minDCF, the minimum over thresholds of the normalised detection cost
  ``(C_miss P_miss p_target + C_fa P_fa (1 - p_target)) / min(C_miss p_target, C_fa (1 - p_target))``
  with NIST SRE / VoxSRC's ``p_target = 0.01``, ``C_miss = C_fa = 1``.

An operating point accepts every trial whose score is at least the threshold; the thresholds are the
distinct scores, plus "accept none".
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automel.errors import DataError
from automel.files import read_user_text
from automel.inference import InputItem, SpeakerInference, atomic_file

__all__ = [
    "C_FA",
    "C_MISS",
    "P_TARGET",
    "Trial",
    "TrialList",
    "VerificationResult",
    "cosine_scores",
    "equal_error_rate",
    "error_rates",
    "min_dcf",
    "read_trials",
    "score_trials",
    "verify",
    "write_scores",
]

P_TARGET, C_MISS, C_FA = 0.01, 1.0, 1.0


@dataclass(frozen=True)
class Trial:
    """One line of a trial list: ``label`` (1 same speaker, 0 different, None unlabelled) and two files.

    ``fields`` are the line's fields as written (for the scores file); ``line`` its number.
    """

    label: int | None
    enroll: Path
    test: Path
    fields: tuple[str, ...]
    line: int


@dataclass(frozen=True)
class TrialList:
    path: Path
    trials: tuple[Trial, ...]

    @property
    def labelled(self) -> bool:
        return self.trials[0].label is not None

    @property
    def labels(self) -> np.ndarray:
        """``(N,)`` int64 labels; :class:`DataError` for an unlabelled list."""
        if not self.labelled:
            raise DataError(f"{self.path}: the trial list has no labels")
        return np.array([t.label for t in self.trials], dtype=np.int64)


@dataclass(frozen=True)
class VerificationResult:
    """Scores ``(N,)`` of a trial list and, when it has labels, its EER and minDCF with their thresholds."""

    trials: TrialList
    scores: np.ndarray
    eer: float | None = None
    eer_threshold: float | None = None
    min_dcf: float | None = None
    min_dcf_threshold: float | None = None

    @property
    def targets(self) -> int:
        return int(self.trials.labels.sum()) if self.trials.labelled else 0


def read_trials(path: Path) -> TrialList:
    """Parse a trial list and check that every file it names exists; :class:`DataError` naming the problem."""
    path = Path(path)
    text = read_user_text(path, "trial list")
    trials: list[Trial] = []
    width: int | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"{path}: line {number}"
        if line.lstrip().startswith("#"):
            continue
        fields = _pick(path, split_fields(line, where))
        if not fields:
            continue
        if len(fields) not in (2, 3):
            raise DataError(f"{where}: expected 'label path1 path2' or 'path1 path2', found {len(fields)} fields "
                            f"({SPACES_HINT})")
        if width is not None and len(fields) != width:
            raise DataError(f"{where}: has {len(fields)} fields but the lines before have {width}; "
                            "label every trial or none")
        width = len(fields)
        label: int | None = None
        if width == 2 and fields[0] in ("0", "1") and not _resolve_path(path, fields[0]).is_file():
            raise DataError(f"{where}: starts with the label {fields[0]} but names only one file")
        if width == 3:
            if fields[0] not in ("0", "1"):
                raise DataError(f"{where}: label {fields[0]!r} must be 1 (same speaker) or 0 (different)")
            label = int(fields[0])
        enroll, test = (_resolve(path, f, where) for f in fields[-2:])
        trials.append(Trial(label, enroll, test, tuple(_quoted(f) for f in fields), number))
    if not trials:
        raise DataError(f"{path}: no trials (expected lines 'label path1 path2' or 'path1 path2')")
    return TrialList(path, tuple(trials))


SPACES_HINT = "a path with spaces goes in quotes, or separate the fields with tabs"


def split_fields(line: str, where: str) -> list[tuple[str, ...]]:
    """The ways to read one trial line, preferred first: at whitespace with shell-style quotes (``"a b.wav"``
    or ``'a b.wav'``; backslashes are not escapes, so Windows paths stay as written), then, when the line
    has tabs, at tabs only (each field stripped)."""
    ways: list[tuple[str, ...]] = []
    if '"' not in line and "'" not in line:
        ways.append(tuple(line.split()))
    else:
        lexer = shlex.shlex(line, posix=True)
        lexer.whitespace_split, lexer.escape, lexer.commenters = True, "", ""
        try:
            ways.append(tuple(lexer))
        except ValueError as exc:  # "No closing quotation"
            if "\t" not in line:
                raise DataError(f"{where}: {str(exc).lower()} ({SPACES_HINT})") from None
    if "\t" in line:
        ways.append(tuple(f.strip() for f in line.split("\t") if f.strip()))
    return ways


def _pick(trial_list: Path, ways: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The first reading whose two paths name existing files (a tab-separated path may hold spaces, and
    a space-separated line may hold a tab); the first reading when none does, for the error message."""
    for fields in ways:
        if len(fields) in (2, 3) and all(_resolve_path(trial_list, f).is_file() for f in fields[-2:]):
            return fields
    return ways[0] if ways else ()


def _quoted(field: str) -> str:
    """``field`` as a scores file writes it: quoted when it holds whitespace or a quote, so it reads back."""
    if not any(c.isspace() or c in "\"'" for c in field):
        return field
    return "'" + field.replace("'", "'\"'\"'") + "'"


def _resolve_path(trial_list: Path, name: str) -> Path:
    file = Path(name)
    return file if file.is_absolute() else trial_list.parent / file


def _resolve(trial_list: Path, name: str, where: str) -> Path:
    file = _resolve_path(trial_list, name)
    if not file.is_file():
        raise DataError(f"{file}: not found ({where})")
    return file


def cosine_scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of ``a (N, E)`` and ``b (N, E)``: ``(N,)`` float64."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return np.einsum("ne,ne->n", a, b) / norms


def error_rates(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every operating point: ``thresholds``, ``p_miss``, ``p_fa``, each ``(K + 1,)``, thresholds descending.

    Point 0 accepts nothing (threshold ``+inf``: ``p_miss`` 1, ``p_fa`` 0); point k accepts scores at least
    the k-th largest distinct score; the last accepts everything. :class:`ValueError` unless ``labels`` are
    0/1 with both present and ``scores`` finite.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape != labels.shape:
        raise ValueError(f"{scores.size} scores but {labels.size} labels")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (non-target) or 1 (target)")
    targets, nontargets = int((labels == 1).sum()), int((labels == 0).sum())
    if targets == 0 or nontargets == 0:
        raise ValueError(f"need both target and non-target trials (got {targets} and {nontargets})")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order] == 1
    # the last position of each run of equal scores: a threshold accepts all of a tie or none of it
    last = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    hits = np.cumsum(sorted_labels)[last]
    false_alarms = (last + 1) - hits
    thresholds = np.r_[np.inf, sorted_scores[last]]
    p_miss = np.r_[1.0, 1.0 - hits / targets]
    p_fa = np.r_[0.0, false_alarms / nontargets]
    return thresholds, p_miss, p_fa


def equal_error_rate(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """``(eer, threshold)``: the rate where miss and false alarm meet on the ROC, and the first threshold at
    which the miss rate is no longer above the false-alarm rate."""
    thresholds, p_miss, p_fa = error_rates(scores, labels)
    labels = np.asarray(labels).reshape(-1)
    targets, nontargets = int((labels == 1).sum()), int((labels == 0).sum())
    # compared in whole counts (misses * N_non <= false alarms * N_target): 1 - 2/3 > 1/3 in floats
    misses = np.rint(p_miss * targets).astype(np.int64)
    false_alarms = np.rint(p_fa * nontargets).astype(np.int64)
    k = int(np.argmax(misses * nontargets <= false_alarms * targets))  # the first; >= 1, point 0 has 1 > 0
    before = p_miss[k - 1] - p_fa[k - 1]
    after = p_miss[k] - p_fa[k]
    t = before / (before - after)  # where the segment from point k-1 to point k crosses p_miss = p_fa
    eer = p_fa[k - 1] + t * (p_fa[k] - p_fa[k - 1])
    return float(eer), float(thresholds[k])


def min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float = P_TARGET, c_miss: float = C_MISS,
            c_fa: float = C_FA) -> tuple[float, float]:
    """``(min_dcf, threshold)``: the smallest normalised detection cost over all operating points."""
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target={p_target} must lie in (0, 1)")
    thresholds, p_miss, p_fa = error_rates(scores, labels)
    cost = (c_miss * p_target * p_miss + c_fa * (1.0 - p_target) * p_fa) / min(c_miss * p_target,
                                                                               c_fa * (1.0 - p_target))
    k = int(np.argmin(cost))
    return float(cost[k]), float(thresholds[k])


def score_trials(inference: SpeakerInference, trials: TrialList) -> np.ndarray:
    """The cosine score ``(N,)`` of each trial; every distinct file is embedded once."""
    files = list(dict.fromkeys(f for t in trials.trials for f in (t.enroll, t.test)))
    vectors = inference.embed([InputItem(str(f), f) for f in files])
    row = {f: k for k, f in enumerate(files)}
    enroll = vectors[[row[t.enroll] for t in trials.trials]]
    test = vectors[[row[t.test] for t in trials.trials]]
    return cosine_scores(enroll, test)


def verify(inference: SpeakerInference, trials: TrialList) -> VerificationResult:
    """Score ``trials``; with labels, also EER and minDCF (``p_target`` 0.01).

    :class:`DataError` when a labelled list lacks target or non-target trials (checked before embedding).
    """
    if trials.labelled:
        labels = trials.labels
        if labels.min() == labels.max():
            kind = "different-speaker (0)" if labels[0] == 1 else "same-speaker (1)"
            raise DataError(f"{trials.path}: has no {kind} trials; EER and minDCF need both kinds")
    scores = score_trials(inference, trials)
    if not np.isfinite(scores).all():  # embeddings are checked finite; this guards the arithmetic after them
        line = trials.trials[int(np.flatnonzero(~np.isfinite(scores))[0])].line
        raise DataError(f"{trials.path}: line {line}: the score is not finite")
    if not trials.labelled:
        return VerificationResult(trials, scores)
    eer, eer_threshold = equal_error_rate(scores, labels)
    dcf, dcf_threshold = min_dcf(scores, labels)
    return VerificationResult(trials, scores, eer, eer_threshold, dcf, dcf_threshold)


def write_scores(out: Path, trials: TrialList, scores: Sequence[float] | np.ndarray) -> Path:
    """Write one line per trial, its fields as written in the list followed by the score, atomically.

    ``out`` may be neither the trial list nor a file it names (:func:`automel.outputs.check_output_file`):
    the scores would replace what they score.
    """
    from automel.outputs import check_output_file

    named = [trials.path, *(p for t in trials.trials for p in (t.enroll, t.test))]
    out = check_output_file(out, inputs=named, parents=True)
    lines = "".join(f"{' '.join(t.fields)} {s:.6f}\n" for t, s in zip(trials.trials, scores, strict=True))
    with atomic_file(out) as tmp:
        tmp.write_text(lines, encoding="utf-8")
    return out
