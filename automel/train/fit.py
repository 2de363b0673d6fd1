"""One training run from parameters to a rebuilt best model: what ``train`` and every search trial call."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from automel._version import versions
from automel.data.split import Split, stratified_split
from automel.data.store import FeatureStore, StoreDtype, open_store
from automel.errors import DataError
from automel.model_config import ModelConfig
from automel.normalize import FeatureNorm
from automel.registry import Registry
from automel.submission import submission_rows
from automel.train.config import RunSettings, TrainParams
from automel.train.device import autocast_dtype, select_device
from automel.train.loop import Callback, ProgressHook, TrainResult, fit, predict

VALID_FRACTION = 0.1
MIN_SPEAKERS = 2


@dataclass
class Workspace:
    """A data set opened for training: the cached store and its recorded split."""

    store: FeatureStore
    split: Split

    @functools.cached_property
    def train_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-mel mean and std of the training split, computed once for all the trials of a search."""
        return self.store.feature_stats(self.split.train)

    @property
    def scored_on(self) -> str:
        """What ``valid_acc`` is measured on: ``valid``, or ``train`` when every speaker has one utterance."""
        return "valid" if len(self.split.valid) else "train"

    def dataset_info(self) -> dict[str, Any]:
        ds = self.store.dataset
        return {"root": str(ds.root), "name": ds.name, "kind": ds.kind, "fingerprint": self.store.content_id,
                "speakers": len(ds.speakers), "train_utterances": len(ds.train), "test_utterances": len(ds.test),
                "features": dict(ds.info.get("features", {}))}


def open_workspace(root: Path, home: Path, split_seed: int = 0, split_record: Mapping[str, Any] | None = None,
                   dtype: StoreDtype = "float32", on_progress: Callable[[int, int], None] | None = None
                   ) -> Workspace:
    """Open (and cache) the store of ``root``; reuse ``split_record`` when a study already fixed the split.
    ``on_progress(done, total)``: the cache build's progress (see :func:`open_store`)."""
    store = open_store(root, home, dtype, on_progress)
    check_speakers(store)
    labels = store.labels.numpy()
    if split_record is not None:
        split = Split.from_json(dict(split_record), store.paths, labels)
    else:
        split = stratified_split(labels, VALID_FRACTION, split_seed)
    return Workspace(store, split)


def check_speakers(store: FeatureStore) -> None:
    """:class:`DataError` for a data set with fewer than two speakers: its accuracy would be 100 % by
    construction (every utterance is the one speaker's), a number that says nothing."""
    speakers = store.dataset.speakers
    if len(speakers) < MIN_SPEAKERS:
        named = f" ({speakers[0]!r})" if speakers else ""
        raise DataError(f"{store.dataset.root}: {len(speakers)} speaker{named}; a speaker classifier needs at least "
                        f"{MIN_SPEAKERS} (its accuracy on one speaker is 100 % by construction)")


def full_params(params: Mapping[str, Any], registry: Registry | None = None) -> dict[str, Any]:
    """Every parameter of the chosen plugins and of training, defaults filled in (what config.json keeps)."""
    from automel.model import resolve_model_params

    return {**resolve_model_params(params, registry), **TrainParams.from_params(params).to_params()}


def train_run(params: Mapping[str, Any], work: Workspace, settings: RunSettings, device: torch.device,
              callbacks: Sequence[Callback] = (), on_progress: ProgressHook | None = None,
              registry: Registry | None = None, on_built: Callable[[torch.nn.Module], None] | None = None
              ) -> tuple[torch.nn.Module, TrainResult, ModelConfig]:
    """Build the model ``params`` describe, train it, and return it with the best weights loaded.

    Plugins come from ``registry`` (a search passes its own; default: :func:`default_registry`).
    ``on_built`` sees the model on the CPU before it trains (a search measures it there, and may stop it).
    """
    from automel.model import build_model

    full = full_params(params, registry)
    train_params = TrainParams.from_params(full)
    store = work.store.on(device)  # copied to an accelerator once per process, not once per trial
    torch.manual_seed(settings.seed)  # the initial weights are part of what the seed reproduces
    model = build_model(full, store.n_mels, store.num_classes, registry)
    if train_params.normalize == "global" and isinstance(model.norm, FeatureNorm):
        model.norm.set_stats(*work.train_stats)
    if on_built is not None:
        on_built(model)
    result = fit(model, store, work.split, train_params, settings, device, callbacks, on_progress)
    model.load_state_dict(result.best_state)
    record = ModelConfig(
        params=full, n_mels=store.n_mels, speakers=store.dataset.speakers, dataset=work.dataset_info(),
        result={"valid_acc": result.best_valid_acc, "scored_on": work.scored_on, "best_step": result.best_step,
                "steps": result.steps,
                "seconds": round(result.seconds, 3), **schedule_record(result)},
        extra={"split": work.split.to_json(store.paths), "settings": dataclasses.asdict(settings),
               "versions": versions()},
    )
    return model.cpu().eval(), result, record


def schedule_record(result: TrainResult) -> dict[str, Any]:
    """What was planned against what ran, and how the run ended (config.json's ``result``)."""
    record: dict[str, Any] = {"planned_steps": result.planned_steps, "schedule": result.schedule,
                              "final_lr": result.final_lr, "annealed": result.annealed}
    if result.averaging is not None:
        record["averaging"] = result.averaging
    if result.large_margin is not None:
        record["large_margin"] = result.large_margin
    return record


def test_submission(model: torch.nn.Module, store: FeatureStore, speakers: tuple[str, ...],
                    device: torch.device | None = None) -> list[tuple[str, str]]:
    """``Id,Category`` rows for the data set's ``testdata.json``, in its order.

    Predicted on ``device`` (default: the best one here, as ``--device auto``), under autocast there.
    """
    device = device if device is not None else select_device("auto")
    test = store.test_indices()
    predictions = predict(model, store, test, device, autocast_dtype(device, True))
    return submission_rows(predictions, [store.paths[i] for i in test.tolist()], speakers)


def metrics_lines(result: TrainResult) -> list[dict[str, Any]]:
    return [{k: (int(v) if k == "step" else v) for k, v in m.items()} for m in result.history]

