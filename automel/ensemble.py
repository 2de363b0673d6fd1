"""Weighted ensembles of trained models: greedy selection, the ensemble model and its export format.

The selection is Caruana et al. 2004, "Ensemble selection from libraries of models" (ICML): forward
selection *with replacement* on validation predictions, as AutoGluon's weighted ensemble does. An
ensemble folder holds ``ensemble.json`` and one ordinary run directory per member::

    ensemble.json   {"format": "automel-ensemble/1", "members": [{"dir": "member-0", "weight": 0.6, ...}],
                     "speakers": [...], "n_mels": 40, "result": {...}}
    member-0/       model.safetensors + config.json (as written by automel.runs.write_run_dir)
    member-1/       ...
    output.csv, README.md, other text files (optional)

:func:`automel.model_folder.load_run` and :func:`~automel.model_folder.read_record` recognise such a folder, so
``automel predict`` works on it unchanged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from automel.data.store import FeatureStore
from automel.errors import ConfigError
from automel.layers import unpadded
from automel.outputs import atomic_folder
from automel.runs import (
    ADAPTATION,
    CARD,
    CONFIG,
    ENSEMBLE,
    SUBMISSION,
    RunRecord,
    load_model,
    read_model_record,
    write_run_dir,
    write_submission_rows,
)
from automel.train.device import autocast
from automel.train.loop import eval_batches

__all__ = ["ENSEMBLE_FORMAT", "EnsembleChoice", "EnsembleModel", "greedy_ensemble", "load_ensemble",
           "mixture_accuracy", "predict_proba", "read_ensemble", "write_ensemble_dir"]

ENSEMBLE_FORMAT = "automel-ensemble/1"
WEIGHT_TOLERANCE = 1e-3  # how far from 1 the weights' sum may be (they are renormalised exactly)
_EPS = 1e-15  # probabilities are clipped here before the log, so one confident miss costs ~34.5, not inf


@torch.no_grad()
def predict_proba(model: nn.Module, store: FeatureStore, indices: np.ndarray, device: torch.device,
                  amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """Softmax probabilities ``(N, C)`` float32 for store rows ``indices (N,)``, in the order given.

    ``model(x (B,T,F), mask (B,T)) -> logits (B,C)`` runs on full-length utterances (no margin: no labels).
    Repeated indices are allowed. :class:`ValueError` when ``indices`` is empty (``C`` would be unknown).
    """
    indices = np.asarray(indices, dtype=np.int64)
    if indices.size == 0:
        raise ValueError("predict_proba: no rows to predict")
    unique, inverse = np.unique(indices, return_inverse=True)
    position = {int(row): k for k, row in enumerate(unique.tolist())}
    model.eval().to(device)
    rows, probs = [], []
    for batch in eval_batches(store, unique, device):
        with unpadded(batch.mask, not batch.padded), autocast(device, amp_dtype):
            logits = model(batch.x, batch.mask)
        probs.append(torch.softmax(logits.float(), dim=-1))
        rows.append(batch.index)
    out = np.empty((len(unique), probs[0].shape[1]), dtype=np.float32)
    out[[position[int(r)] for r in torch.cat(rows).tolist()]] = torch.cat(probs).cpu().numpy()
    return out[inverse.reshape(-1)]


@dataclass(frozen=True, eq=False)
class EnsembleChoice:
    """What :func:`greedy_ensemble` chose and how it scores on the validation rows.

    ``weights (M,)`` float64 (read-only) are non-negative, sum to 1, and are 0 for unused candidates.
    """

    weights: np.ndarray
    valid_acc: float
    valid_loss: float
    best_single_index: int
    best_single_acc: float
    best_single_loss: float

    @property
    def members(self) -> list[int]:
        """Indices of the candidates with a non-zero weight, in candidate order."""
        return [int(i) for i in np.flatnonzero(self.weights)]


def _log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    return float(-np.log(np.clip(probs[np.arange(len(labels)), labels], _EPS, None)).mean())


def _accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    return float((probs.argmax(1) == labels).mean())


def mixture_accuracy(probas: Sequence[np.ndarray], weights: Sequence[float] | np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the weighted mean of ``probas`` (one ``(N, C)`` array per candidate) on ``labels (N,)``.

    ``weights (M,)`` need not sum to 1 (only the argmax counts); a single candidate of weight 1 gives its own
    accuracy, so an ensemble and a single model are compared on the very same probabilities.
    """
    w = np.asarray(weights, dtype=np.float64)
    if len(probas) == 0 or w.shape != (len(probas),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"mixture_accuracy: {len(probas)} candidates but weights {w.tolist()}")
    mixed = sum(float(wk) * np.asarray(p, dtype=np.float64) for wk, p in zip(w, probas, strict=True) if wk > 0)
    return _accuracy(np.asarray(mixed), np.asarray(labels, dtype=np.int64))


def greedy_ensemble(probas: Sequence[np.ndarray], labels: np.ndarray, max_rounds: int = 25) -> EnsembleChoice:
    """Caruana's greedy forward selection with replacement, minimising validation log-loss.

    ``probas``: one ``(N, C)`` probability array per candidate (e.g. from :func:`predict_proba`);
    ``labels (N,)`` the true classes. Round 1 picks the best single model; each further round adds (again,
    possibly) the candidate whose inclusion gives the lowest log-loss of the averaged probabilities. The
    result is the best prefix over the ``max_rounds`` rounds (as AutoGluon keeps), so it never scores worse
    than the best single model. Weights are the selection counts over their total. Ties go to the lowest
    index and the earliest round, so the result is deterministic.

    Log-loss rather than accuracy: validation sets here are small (a tenth of the data; 10 % of HW4's
    sample is a few dozen utterances), where accuracy moves in coarse steps and is mostly ties, so greedy
    steps on it stall or follow noise. Log-loss is a smooth proper scoring rule that still rewards a
    member which fixes confident mistakes, and it is exactly the loss of :class:`EnsembleModel`'s output.
    Accuracy is reported next to it.
    """
    if not probas:
        raise ValueError("greedy_ensemble: no candidates")
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in probas])  # (M, N, C)
    labels = np.asarray(labels, dtype=np.int64)
    if stack.ndim != 3 or stack.shape[1] != len(labels) or len(labels) == 0:
        raise ValueError(f"greedy_ensemble: probas must be (N, C) arrays for {len(labels)} labels; "
                         f"got {stack.shape}")
    if labels.min() < 0 or labels.max() >= stack.shape[2]:
        raise ValueError(f"greedy_ensemble: labels must lie in [0, {stack.shape[2]})")
    if not np.isfinite(stack).all() or (stack < 0).any():
        raise ValueError("greedy_ensemble: probabilities must be finite and non-negative")
    if max_rounds < 1:
        raise ValueError("greedy_ensemble: max_rounds must be at least 1")
    singles = [_log_loss(p, labels) for p in stack]
    counts = np.zeros(len(stack), dtype=np.int64)
    total = np.zeros_like(stack[0])
    best_loss, best_counts = math.inf, counts.copy()
    for rounds in range(1, max_rounds + 1):
        losses = [_log_loss((total + p) / rounds, labels) for p in stack]
        pick = int(np.argmin(losses))  # first minimum: lowest index on ties
        counts[pick] += 1
        total += stack[pick]
        if losses[pick] < best_loss:
            best_loss, best_counts = losses[pick], counts.copy()
    weights = best_counts / best_counts.sum()
    weights.setflags(write=False)
    mixed = np.tensordot(weights, stack, axes=1)
    single = int(np.argmin(singles))
    return EnsembleChoice(weights, _accuracy(mixed, labels), _log_loss(mixed, labels), single,
                          _accuracy(stack[single], labels), singles[single])


class EnsembleModel(nn.Module):
    """The weighted average of its members' softmax probabilities, returned as a log.

    ``forward(x (B,T,F), mask (B,T)) -> (B,C)`` gives ``log(sum_m w_m softmax(member_m(x, mask)))``:
    argmax is the ensemble's prediction and ``cross_entropy`` on it is the ensemble's log-loss, so
    :func:`automel.train.loop.evaluate` and ``predict`` take it as any model. Members must share their
    speaker list (the same classes in the same order); zero-weight members are never run.
    """

    weights: Tensor

    def __init__(self, members: Sequence[nn.Module], weights: Sequence[float] | np.ndarray | Tensor) -> None:
        super().__init__()
        w = torch.as_tensor(np.asarray(weights, dtype=np.float64)).float()
        if len(members) == 0 or w.shape != (len(members),):
            raise ValueError(f"EnsembleModel: {len(members)} members but weights of shape {tuple(w.shape)}")
        _check_weights(w.tolist(), "EnsembleModel")
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", w / w.sum())

    def forward(self, x: Tensor, mask: Tensor, labels: Tensor | None = None) -> Tensor:
        """Log of the weighted mean probabilities ``(B, C)``; ``labels`` is ignored (no margins at inference)."""
        terms = [torch.log_softmax(member(x, mask).float(), dim=-1) + torch.log(w)
                 for member, w in zip(self.members, self.weights, strict=True) if w > 0]
        return torch.logsumexp(torch.stack(terms), dim=0)


def _check_weights(weights: Sequence[Any], where: str) -> list[float]:
    """Finite, non-negative numbers summing to ~1; else :class:`ConfigError` naming ``where``."""
    if not weights:
        raise ConfigError(f"{where}: an ensemble needs at least one member")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"{where}: member weight {w!r} is not a finite non-negative number")
    if abs(sum(weights) - 1.0) > WEIGHT_TOLERANCE:
        raise ConfigError(f"{where}: member weights sum to {sum(weights):.6g}, not 1")
    return [float(w) for w in weights]


def write_ensemble_dir(out: Path, members: Sequence[tuple[Mapping[str, Tensor], RunRecord, Mapping[str, Any]]],
                       weights: Sequence[float] | np.ndarray, submission: list[tuple[str, str]] | None = None,
                       card: str | None = None, replace: bool = False, extra: Mapping[str, str] | None = None,
                       result: Mapping[str, Any] | None = None,
                       metrics: Sequence[Sequence[Mapping[str, Any]]] | None = None) -> Path:
    """Write an ensemble folder atomically; refuse to overwrite a non-empty one unless ``replace``.

    ``members``: ``(state_dict, record, info)`` per candidate, ``info`` free-form JSON (e.g. the trial
    number) kept in the member's entry of ``ensemble.json``. ``weights (M,)`` as from
    :func:`greedy_ensemble`: members of weight 0 are left out, the rest renormalised and written as
    ``member-0``, ``member-1``, ... in the order given. ``submission`` rows go to ``output.csv``, ``card``
    to ``README.md``, ``extra`` maps further top-level file names to their text, ``result`` (e.g. the
    ensemble's ``valid_acc``) is kept in ``ensemble.json`` and becomes the loaded record's ``result``.
    ``metrics``: one list of log rows per member (e.g. a refit's loss and learning rate), written to the
    member's ``metrics.jsonl``; without it those files are empty.
    """
    out = Path(out).resolve()
    if len(members) != len(weights) or (metrics is not None and len(metrics) != len(members)):
        raise ConfigError(f"{out}: {len(members)} members but {len(weights)} weights"
                          + ("" if metrics is None else f" and {len(metrics)} metrics lists"))
    logs = list(metrics) if metrics is not None else [[] for _ in members]
    checked = _check_weights([float(w) for w in weights], str(out))
    kept = [(m, w) for m, w in zip(members, checked, strict=True) if w > 0]
    kept_logs = [log for log, w in zip(logs, checked, strict=True) if w > 0]
    total = sum(w for _, w in kept)
    first = kept[0][0][1]
    for _, record, _ in (m for m, _ in kept):
        if record.speakers != first.speakers or record.n_mels != first.n_mels:
            raise ConfigError(f"{out}: members disagree on speakers or n_mels; an ensemble needs the same classes")
    reserved = {ENSEMBLE, SUBMISSION, CARD}
    for name in extra or {}:
        if Path(name).name != name or name in reserved or name.startswith(("member-", ".")):
            raise ConfigError(f"{out}: extra file name {name!r} is not a free top-level file name")
    manifest = {"format": ENSEMBLE_FORMAT, "speakers": list(first.speakers), "n_mels": first.n_mels,
                "result": dict(result or {}),
                "members": [{**dict(info), "dir": f"member-{k}", "weight": w / total}
                            for k, ((_, _, info), w) in enumerate(kept)]}
    text = json.dumps(manifest, indent=2)  # fails here, before anything is written, if info is not JSON
    with atomic_folder(out, replace) as tmp:
        for k, (((state, record, _), _), log) in enumerate(zip(kept, kept_logs, strict=True)):
            write_run_dir(tmp / f"member-{k}", state, record, log, None)
        (tmp / ENSEMBLE).write_text(text, encoding="utf-8")
        if submission is not None:
            write_submission_rows(tmp / SUBMISSION, submission)
        if card is not None:
            (tmp / CARD).write_text(card, encoding="utf-8")
        for name, body in (extra or {}).items():
            (tmp / name).write_text(body, encoding="utf-8")
    return out


def read_ensemble(path: Path) -> tuple[RunRecord, list[tuple[Path, float]]]:
    """The ensemble's record and its ``(member folder, weight)`` pairs; :class:`ConfigError` naming the file.

    The record takes ``params`` and ``dataset`` from the first member, the shared ``speakers`` and ``n_mels``,
    ``result`` from ``ensemble.json``, and ``extra["ensemble"]`` = the members' entries (plus their params).
    """

    source = Path(path) / ENSEMBLE
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read ensemble manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != ENSEMBLE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{source}: not an automel ensemble (format {found!r}, expected {ENSEMBLE_FORMAT!r})")
    speakers, n_mels, result = data.get("speakers"), data.get("n_mels"), data.get("result", {})
    if not isinstance(speakers, list) or not all(isinstance(s, str) for s in speakers) or not speakers:
        raise ConfigError(f"{source}: 'speakers' must be a non-empty list of names")
    if isinstance(n_mels, bool) or not isinstance(n_mels, int) or not isinstance(result, dict):
        raise ConfigError(f"{source}: 'n_mels' must be an integer and 'result' an object")
    entries = data.get("members")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{source}: 'members' must be a non-empty list of objects")
    weights = _check_weights([e.get("weight") for e in entries], str(source))
    members: list[tuple[Path, float]] = []
    records: list[RunRecord] = []
    for entry, weight in zip(entries, weights, strict=True):
        name = entry.get("dir")
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise ConfigError(f"{source}: member dir {name!r} must be a folder name inside the ensemble")
        folder = Path(path) / name
        if not folder.is_dir():
            raise ConfigError(f"{source}: member folder {folder} is missing")
        if (folder / ENSEMBLE).exists():
            raise ConfigError(f"{source}: member {folder} is itself an ensemble; nesting is not supported")
        record = read_model_record(folder)
        for field, want in (("speakers", tuple(speakers)), ("n_mels", n_mels)):
            if getattr(record, field) != want:
                raise ConfigError(f"{source}: member {folder / CONFIG} has other {field} than the ensemble")
        members.append((folder, weight / sum(weights)))
        records.append(record)
    info = [{**e, "weight": w, "params": r.params} for e, (_, w), r in zip(entries, members, records, strict=True)]
    first = records[0]
    adapted = {ADAPTATION: first.extra[ADAPTATION]} if ADAPTATION in first.extra else {}  # the members share it
    record = RunRecord(dict(first.params), first.n_mels, first.speakers, dict(first.dataset),
                       dict(result),
                       {"ensemble": {"format": ENSEMBLE_FORMAT, "members": info}, **adapted})
    return record, members


def load_ensemble(path: Path) -> tuple[EnsembleModel, RunRecord]:
    """Rebuild an ensemble folder's members with their weights (eval mode, CPU)."""

    record, members = read_ensemble(path)
    models = [load_model(folder)[0] for folder, _ in members]
    return EnsembleModel(models, [w for _, w in members]).eval(), record
