"""A trained model from Python: :func:`load` a run directory, an export or an ensemble, then predict, embed,
verify and export with :class:`Model`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from automel.api._common import PathLike

if TYPE_CHECKING:
    from automel.inference import InputItem, Prediction, SpeakerInference
    from automel.verification import TrialList, VerificationResult

__all__ = ["Embeddings", "Inputs", "Model", "load", "windows_line"]

Inputs = Any  # a path, an array (T, n_mels), or a sequence of them: see Model.predict


@dataclass(frozen=True)
class Embeddings:
    """L2-normalised speaker embeddings ``vectors (N, E)``, one per id, in the order of the inputs."""

    ids: list[str]
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        return self.vectors if dtype is None else self.vectors.astype(dtype)

    def save(self, out: PathLike, metadata: Mapping[str, str] | None = None) -> list[Path]:
        """Write ``FILE.npy`` (+ ``FILE.ids.txt``) or ``FILE.safetensors``, as ``automel embed`` does;
        ``metadata`` goes into a ``.safetensors`` file's header (``automel embed`` records the model there)."""
        from automel.arguments import check_path
        from automel.inference import embedding_format, write_embeddings

        path = check_path(out, "out") or Path(out)
        embedding_format(path)
        return write_embeddings(path, self.ids, self.vectors, dict(metadata) if metadata else None)


def windows_line(name: str, frames: int, windows: int) -> str:
    """What is said of an input long enough to run in windows (at the 10 ms hop)."""
    return (f"{name}: {frames / 100:.0f} s long: it runs in {windows} overlapping windows, whose outputs "
            "are averaged")


def load(path: PathLike, device: str = "cpu", *, progress: Callable[[str], None] | None = None) -> Model:
    """A model folder (an export, a run directory or an ensemble) ready to predict and embed.

    ``progress`` hears a line for each input long enough to run in overlapping windows.
    :class:`~automel.errors.ConfigError` naming a missing or corrupt file.
    """
    from automel.api._common import check_callback
    from automel.arguments import check_path, check_text
    from automel.inference import SpeakerInference
    from automel.train.device import select_device

    folder = check_path(path, "path") or Path(path)
    check_callback(progress, "progress")
    inference = SpeakerInference.load(folder, select_device(check_text(device, "device") or device))
    if progress is not None:
        say = progress
        inference.on_windows = lambda name, frames, windows: say(windows_line(name, frames, windows))
    return Model(inference)


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

    def verify(self, trials: PathLike | TrialList) -> VerificationResult:
        """Score a VoxCeleb-style trial list (``label path1 path2`` a line; a path or one already read with
        :func:`automel.verification.read_trials`): EER and minDCF when labelled."""
        from automel.arguments import check_path
        from automel.verification import TrialList, read_trials, verify

        listed = trials if isinstance(trials, TrialList) else read_trials(check_path(trials, "trials") or Path(trials))
        return verify(self.inference, listed)

    def export(self, formats: Sequence[str], out: PathLike | None = None) -> dict[str, Path]:
        """Write ``model.onnx`` and/or ``model.ts`` into ``out`` (default: the model's folder)."""
        from automel.arguments import check_names, check_path
        from automel.errors import ConfigError
        from automel.exporting import describe, export_model, require_formats

        chosen = require_formats(check_names(formats, "formats"))  # "onnx" is one format, not four letters
        if not chosen:
            raise ConfigError("`formats` names no format; give 'onnx' and/or 'torchscript'")
        folder = check_path(out, "out", optional=True) or self.path
        record = self.inference.record
        return export_model(self.inference.model, folder, chosen, record.n_mels,
                            what=f"{self.path} ({describe(record.params)})")

    def __repr__(self) -> str:
        params = self.inference.record.params
        return (f"Model('{self.path}': {params.get('encoder')}/{params.get('pooling')}/{params.get('head')}, "
                f"{len(self.speakers)} speakers)")


def _items(inputs: Inputs) -> list[InputItem]:
    """One input or a list (or tuple) of them, as :func:`automel.inference.collect_inputs` takes them (or
    as it returned them: a list of :class:`~automel.inference.InputItem`); :class:`DataError` for anything
    else (None, a number, a dict), naming what was given."""
    import os

    import torch

    from automel.errors import DataError
    from automel.inference import InputItem, collect_inputs

    if isinstance(inputs, str | os.PathLike | np.ndarray | torch.Tensor):
        return collect_inputs([inputs])
    if isinstance(inputs, list | tuple):
        if inputs and all(isinstance(item, InputItem) for item in inputs):
            return list(inputs)  # already collected (the CLI checks its outputs against them first)
        return collect_inputs(list(inputs))
    raise DataError(f"inputs must be a path, a NumPy array or tensor (T, n_mels), or a list of them; "
                    f"got {type(inputs).__name__}")
