"""Weighted ensembles of trained models: greedy selection, the ensemble model and its export format.

The selection is Caruana et al. 2004, "Ensemble selection from libraries of models" (ICML): forward
selection *with replacement* on validation predictions, as AutoGluon's weighted ensemble does. An
ensemble folder holds ``ensemble.json`` and one ordinary run directory per member::

    ensemble.json   {"format": "automel-ensemble/1", "members": [{"dir": "member-0", "weight": 0.6, ...}],
                     "speakers": [...], "n_mels": 40, "result": {...}}
    member-0/       model.safetensors + config.json (as written by automel.model_folder.write_run_dir)
    member-1/       ...
    output.csv, README.md, other text files (optional)

:func:`automel.model_folder.load_run` and :func:`~automel.model_folder.read_config` recognise such a folder, so
``automel predict`` works on it unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from automel.data.store import FeatureStore
from automel.errors import ConfigError
from automel.layers import unpadded
from automel.train.device import autocast
from automel.train.loop import eval_batches

__all__ = ["ENSEMBLE_FORMAT", "EnsembleChoice", "EnsembleModel", "check_weights", "greedy_ensemble",
           "mixture_accuracy", "predict_proba"]

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
        check_weights(w.tolist(), "EnsembleModel")
        self.members = nn.ModuleList(members)
        self.register_buffer("weights", w / w.sum())

    def forward(self, x: Tensor, mask: Tensor, labels: Tensor | None = None) -> Tensor:
        """Log of the weighted mean probabilities ``(B, C)``; ``labels`` is ignored (no margins at inference)."""
        terms = [torch.log_softmax(member(x, mask).float(), dim=-1) + torch.log(w)
                 for member, w in zip(self.members, self.weights, strict=True) if w > 0]
        return torch.logsumexp(torch.stack(terms), dim=0)


def check_weights(weights: Sequence[Any], where: str) -> list[float]:
    """Finite, non-negative numbers summing to ~1; else :class:`ConfigError` naming ``where``."""
    if not weights:
        raise ConfigError(f"{where}: an ensemble needs at least one member")
    for w in weights:
        if isinstance(w, bool) or not isinstance(w, int | float) or not math.isfinite(w) or w < 0:
            raise ConfigError(f"{where}: member weight {w!r} is not a finite non-negative number")
    if abs(sum(weights) - 1.0) > WEIGHT_TOLERANCE:
        raise ConfigError(f"{where}: member weights sum to {sum(weights):.6g}, not 1")
    return [float(w) for w in weights]


