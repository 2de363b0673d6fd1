"""Reading a model folder, one model's or an ensemble's: the one place that tells the two apart.

A run directory or export holds ``config.json`` and ``model.safetensors`` (:mod:`automel.runs`); an
ensemble folder holds ``ensemble.json`` and one such folder per member (:mod:`automel.ensemble`). Every
command that takes "a model" reads it through here, so neither of those modules needs the other's reader.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automel.ensemble import load_ensemble, read_ensemble
from automel.runs import ENSEMBLE, RunRecord, load_model, read_model_record

__all__ = ["is_ensemble", "load_run", "read_record"]


def is_ensemble(folder: Path) -> bool:
    return (Path(folder) / ENSEMBLE).is_file()


def read_record(folder: Path) -> RunRecord:
    """The record of a run directory or export; of an ensemble folder, the ensemble's."""
    return read_ensemble(folder)[0] if is_ensemble(folder) else read_model_record(folder)


def load_run(folder: Path) -> tuple[Any, RunRecord]:
    """The model of a run directory or export with its saved weights (eval mode, CPU), or of an ensemble
    folder an :class:`automel.ensemble.EnsembleModel`; :class:`ConfigError` naming a missing or broken file."""
    return load_ensemble(folder) if is_ensemble(folder) else load_model(folder)
