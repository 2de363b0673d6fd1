"""Trial weights and configs through Optuna's artifact API (a filesystem store beside the study).

Only the best ``keep`` completed trials keep their weights, to bound disk use; the configs (a few KB)
are kept for every trial. The artifact ids live in the trial's user attributes.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.trial import FrozenTrial, TrialState

from automel.errors import DiskError, StudyError
from automel.model_config import ModelConfig
from automel.model_folder import CONFIG, WEIGHTS

WEIGHTS_ATTR, CONFIG_ATTR = "artifact_weights", "artifact_config"


class ArtifactStore(FileSystemArtifactStore):
    """Optuna's filesystem store, knowing its folder, that never keeps half a file: a write that fails (a
    full disk) removes what it wrote, so the space is free again for the study's own record of the failure."""

    def __init__(self, path: Path) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self.last_written: str | None = None  # lets a failed upload remove a file its trial never recorded

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        try:
            super().write(artifact_id, content_body)
        except BaseException:
            with contextlib.suppress(Exception):
                self.remove(artifact_id)
            raise
        self.last_written = artifact_id


def artifact_store(path: Path) -> ArtifactStore:
    with DiskError.guard(path):
        path.mkdir(parents=True, exist_ok=True)
    return ArtifactStore(path)


def save_trial_artifacts(trial: optuna.Trial, store: FileSystemArtifactStore, state: Mapping[str, Any],
                         record: ModelConfig) -> None:
    """Upload the trial's weights (safetensors) and config.json; remember their ids on the trial.

    A full or read-only store raises :class:`DiskError` (checked before the upload, with the size needed),
    and leaves no part of this trial's files behind.
    """
    from safetensors.torch import save_file

    place = store.path if isinstance(store, ArtifactStore) else None
    if isinstance(store, ArtifactStore):
        store.last_written = None
    uploaded: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        weights, config = Path(tmp) / WEIGHTS, Path(tmp) / CONFIG
        save_file({k: v.contiguous() for k, v in state.items()}, str(weights))
        config.write_text(json.dumps(record.to_json(), indent=2), encoding="utf-8")
        needed = weights.stat().st_size + config.stat().st_size
        try:
            with DiskError.guard(place, needed):
                for path, mimetype in ((weights, "application/octet-stream"), (config, "application/json")):
                    uploaded.append(upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial,
                                                    mimetype=mimetype))
                trial.set_user_attr(WEIGHTS_ATTR, uploaded[0])
                trial.set_user_attr(CONFIG_ATTR, uploaded[1])
        except BaseException:
            # what was uploaded, and a file written whose record then failed (the study's storage is full too)
            written = getattr(store, "last_written", None)
            for artifact_id in {*uploaded, *([written] if written else [])}:
                with contextlib.suppress(Exception):
                    store.remove(artifact_id)
            raise


def trim_weights(study: optuna.Study, store: FileSystemArtifactStore, keep: int) -> list[int]:
    """Remove the weights of completed trials outside the best ``keep``; return their numbers."""
    ranked = sorted((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                     if WEIGHTS_ATTR in t.user_attrs), key=lambda t: (-(t.value or 0.0), t.number))
    removed = []
    for trial in ranked[keep:]:
        artifact_id = trial.user_attrs[WEIGHTS_ATTR]
        if _exists(store, artifact_id):
            store.remove(artifact_id)
            removed.append(trial.number)
    return removed


def has_weights(store: FileSystemArtifactStore, trial: FrozenTrial) -> bool:
    return WEIGHTS_ATTR in trial.user_attrs and _exists(store, trial.user_attrs[WEIGHTS_ATTR])


def download_trial(store: FileSystemArtifactStore, trial: FrozenTrial, into: Path) -> Path:
    """Fetch the trial's weights and config into the folder ``into`` (a run directory layout)."""
    if not has_weights(store, trial):
        if WEIGHTS_ATTR in trial.user_attrs and trial.user_attrs.get("worker"):
            raise StudyError(f"trial {trial.number}'s weights are not in this home's artifact store (the trial ran on "
                             f"{trial.user_attrs['worker']}, or its weights were trimmed); give the workers one "
                             f"shared `home`, or export on the machine that ran it")
        raise StudyError(f"trial {trial.number}'s weights were not kept (only the best trials keep theirs); "
                         f"retrain it with `automel train --config` on its parameters")
    download_artifact(artifact_store=store, file_path=str(into / WEIGHTS), artifact_id=trial.user_attrs[WEIGHTS_ATTR])
    download_artifact(artifact_store=store, file_path=str(into / CONFIG), artifact_id=trial.user_attrs[CONFIG_ATTR])
    return into


def _exists(store: FileSystemArtifactStore, artifact_id: str) -> bool:
    try:
        store.open_reader(artifact_id).close()
    except Exception:  # the store raises ArtifactNotFound (or OSError) for a removed file
        return False
    return True
