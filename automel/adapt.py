"""Adaptation to unlabelled target data: feature statistics and BatchNorm statistics (AdaBN).

A model trained on one recording set meets its test through another microphone, room and noise. Test
sets (HW4's ``testdata.json``, a deployment's own audio) come without labels, yet their *statistics* are
there for the taking, and they are what moved:

- **Feature normalisation.** A model with ``train.normalize = global`` standardises each mel bin with the
  training set's mean and std; a channel adds its own per-bin offset (its frequency response, in the log
  domain) and noise lifts the floor. Taking the mean and std from the target data removes both.
- **BatchNorm statistics** (AdaBN: Li, Wang, Shi, Liu & Hou 2016, "Revisiting Batch Normalization For
  Practical Domain Adaptation"): every BatchNorm layer's running mean and variance are re-estimated on the
  target data, so each layer sees its inputs as standardised as it did in training.

Labels are never read: only features. :func:`adapt_model` changes the model in place and returns an
:class:`Adaptation`, the record that ``config.json``, ``export.json`` and the model card keep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor, nn

from automel.errors import ConfigError, option_named
from automel.model_config import ADAPTATION
from automel.normalize import FeatureNorm
from automel.train.averaging import reestimate_batchnorm

if TYPE_CHECKING:
    from automel.data.store import FeatureStore

ADAPT_MODES = ("none", "test")  # or the path of a folder of unlabelled target data
DEFAULT_SEARCH_ADAPT = "test"  # what a search's export does by default (see README: Adaptation)
MIN_UTTERANCES = 8  # fewer say too little about a channel; the model is left as it is

Batches = Callable[[], Iterable[tuple[Tensor, Tensor]]]  # a fresh pass of (x (B,T,F), mask (B,T)) each call


@dataclass(frozen=True)
class Adaptation:
    """What was adapted, and to which data: ``data`` says where it came from, in words or as a path."""

    mode: str  # "test", or "folder" for a folder the user named
    data: str
    utterances: int
    feature_norm: int  # FeatureNorm layers (global mode) given the target's mean and std
    batchnorm: int  # BatchNorm layers whose statistics were re-estimated
    skipped: str | None = None  # why nothing was adapted, when nothing was

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def changed(self) -> bool:
        return self.skipped is None and (self.feature_norm + self.batchnorm) > 0


def adapt_model(model: nn.Module, batches: Batches, utterances: int, mode: str, data: str) -> Adaptation:
    """Adapt ``model`` in place to the ``utterances`` that ``batches`` yields (two passes); see the module docs.

    ``batches`` must give every target utterance whole (no crops), padded frames masked out.
    """
    norms = [m for m in model.modules() if isinstance(m, FeatureNorm) and m.mode == "global"]
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if utterances < MIN_UTTERANCES:
        why = "there are none" if utterances == 0 else f"{utterances} utterances are too few"
        return Adaptation(mode, data, utterances, 0, 0, skipped=f"{why} (at least {MIN_UTTERANCES} are needed)")
    if not norms and not layers:
        return Adaptation(mode, data, utterances, 0, 0, skipped="the model has no statistics to adapt")
    if norms:
        mean, std = target_stats(batches())
        for norm in norms:
            norm.set_stats(mean.to(norm.mean.device), std.to(norm.std.device))
    used = reestimate_batchnorm(model, batches()) if layers else 0
    return Adaptation(mode, data, utterances, len(norms), len(layers) if used else 0)


@torch.no_grad()
def target_stats(batches: Iterable[tuple[Tensor, Tensor]]) -> tuple[Tensor, Tensor]:
    """Per-mel mean and std ``(F,)`` over the real frames of ``batches`` (float64 sums, float32 out)."""
    total: Tensor | None = None
    square: Tensor | None = None
    count = 0.0
    for x, mask in batches:
        real = x.double().masked_fill(~mask.unsqueeze(-1), 0.0)
        total = real.sum((0, 1)) if total is None else total + real.sum((0, 1))
        square = (real * real).sum((0, 1)) if square is None else square + (real * real).sum((0, 1))
        count += float(mask.sum())
    if total is None or square is None or count == 0:
        raise ValueError("no frames to take statistics from")
    mean = total / count
    std = (square / count - mean * mean).clamp_min(1e-8).sqrt()
    return mean.float().cpu(), std.float().cpu()


def copy_module(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` to adapt, leaving the original's statistics as they were trained."""
    import copy

    return copy.deepcopy(model)


def check_adapt(value: str, what: str = "adapt", auto: bool = False) -> str:
    """``value`` if it is a mode (``none``, ``test``, and ``auto`` where allowed) or an existing folder;
    :class:`ConfigError` naming it otherwise (before any work) as ``what`` (a parameter, shown in backticks,
    or a flag as given: :func:`automel.errors.option_named`)."""
    what = option_named(what)
    modes = (*ADAPT_MODES, "auto") if auto else ADAPT_MODES
    if value in modes:
        return value
    path = Path(value)
    if not path.exists():
        raise ConfigError(f"{what} {value!r} is neither {', '.join(modes)} nor an existing folder")
    if not path.is_dir():
        raise ConfigError(f"{what} {value}: not a folder (give a folder of unlabelled audio or an HW4 data set)")
    return value


def store_batches(store: FeatureStore, indices: np.ndarray, device: torch.device) -> Batches:
    """Whole utterances ``indices`` of ``store`` on ``device``, length-bucketed, as ``(x, mask)`` passes."""
    from automel.train.loop import eval_batches

    return lambda: ((b.x, b.mask) for b in eval_batches(store, indices, device))


def adapt_to_store(model: nn.Module, store: FeatureStore, indices: np.ndarray, mode: str, data: str,
                   device: torch.device) -> Adaptation:
    """:func:`adapt_model` on ``store``'s utterances ``indices`` (their labels, if any, are never read)."""
    model.to(device)
    return adapt_model(model, store_batches(store, indices, device), len(indices), mode, data)


def adapt_to_folder(model: nn.Module, folder: Path, n_mels: int, home: Path, device: torch.device,
                    frontend: Callable[[Any], np.ndarray]) -> Adaptation:
    """:func:`adapt_model` on every utterance of ``folder``: an HW4 data set (training and test features,
    labels unused) or a folder of audio, turned into features by ``frontend(item)`` (the model's own)."""
    from automel.data.layout import METADATA
    from automel.data.store import open_store
    from automel.inference import collect_inputs, padded_batches

    model.to(device)
    if (folder / METADATA).is_file():
        store = open_store(folder, home)
        if store.n_mels != n_mels:
            raise ConfigError(f"{folder}: its features have {store.n_mels} mel bins, the model takes {n_mels}")
        indices = np.arange(len(store.lengths))
        return adapt_model(model, store_batches(store, indices, device), len(indices), "folder", str(folder))
    features = [frontend(item) for item in collect_inputs([folder])]
    batches: Batches = lambda: ((x, mask) for _, x, mask in padded_batches(features, device))  # noqa: E731
    return adapt_model(model, batches, len(features), "folder", str(folder))


def recorded_mode(extra: dict[str, Any]) -> str:
    """What ``--adapt auto`` means for a model: ``test`` when it was exported adapting to its test data (its
    weights keep the trained statistics, and it adapts to whatever it predicts), else ``none`` (a folder's
    statistics are already in its weights)."""
    recorded = extra.get(ADAPTATION) or {}
    return "test" if recorded.get("mode") == "test" else "none"


def adapt_for_prediction(model: nn.Module, extra: dict[str, Any], store: FeatureStore, choice: str, home: Path,
                         device: torch.device, frontend: Callable[[Any], np.ndarray]) -> Adaptation | None:
    """Adapt ``model`` before it predicts ``store``'s test utterances, as ``choice`` says (``auto``: as recorded)."""
    mode = recorded_mode(extra) if choice == "auto" else choice
    if mode == "none":
        return None
    if mode == "test":
        test = store.test_indices()
        where = f"the {len(test)} test utterances of {store.dataset.root}"
        return adapt_to_store(model, store, test, "test", where, device)
    return adapt_to_folder(model, Path(mode), store.n_mels, home, device, frontend)


def describe(adaptation: Adaptation) -> str:
    """One line for the user: what was adapted to what, or why nothing was."""
    if adaptation.skipped:
        return f"no adaptation to {adaptation.data}: {adaptation.skipped}"
    parts = []
    if adaptation.feature_norm:
        parts.append("feature statistics")
    if adaptation.batchnorm:
        parts.append(f"{adaptation.batchnorm} BatchNorm layers' statistics")
    return f"adapted {' and '.join(parts)} to {adaptation.data} ({adaptation.utterances} utterances, labels unused)"


def adapt_export(model: nn.Module, record: Any, store: FeatureStore, adapt: str, home: Path, device: torch.device
                 ) -> tuple[dict[str, Any] | None, nn.Module]:
    """Adapt an export as ``adapt`` says: the adaptation's record (None for ``none``) and the model to predict with.

    ``test``: the weights stay as trained (so they reproduce the study's validation scores) and the model
    records that it adapts to whatever it predicts; the export's submission comes from an adapted copy, as
    ``automel predict`` makes one. A folder: the adapted statistics go into the exported weights, since the
    folder is not there when the model predicts. ``record`` is the model's ``ModelConfig`` (its front end).
    """
    from automel.inference import SpeakerInference

    if adapt == "none":
        return None, model
    target = copy_module(model) if adapt == "test" else model
    done = adapt_for_prediction(target, {}, store, adapt, home, device,
                                SpeakerInference(target, record, "the export").features)
    assert done is not None, "a mode other than none always adapts or says why not"
    target.cpu()  # the export's weights are saved from here; predicting moves the model where it runs
    return done.to_json(), target
