"""Using a trained model: speaker embeddings and top-k predictions for audio files, feature files and data sets.

:class:`SpeakerInference` loads a run directory or export once and turns inputs into what a user wants:

- an audio file (WAV, FLAC, OGG, MP3: whatever libsndfile reads; any sample rate) is featurised by the front
  end the model was trained with, which training records in ``config.json`` (``dataset.features``, from the
  prepared data set's ``metadata.json``); a model trained on HW4 ``.pt`` features records none and refuses
  audio with a :class:`~automel.errors.FrontendError`;
- a ``.pt`` feature file ``(T, n_mels)`` is used as it is;
- a folder is either an HW4 data set (it has ``metadata.json``: all its utterances, training then test,
  each with its feature file name as id) or a folder of audio files (searched recursively, sorted).

Normalisation is part of the model (:class:`~automel.normalize.FeatureNorm`, saved with the weights), so
features go in raw. Utterances run whole, sorted by length into padded, masked batches; one longer than two
windows (a few seconds) runs in overlapping windows whose outputs are averaged (:mod:`automel.long_inputs`),
so time and memory grow linearly with its length. Audio is recognised and decoded by its content, not its
name (:mod:`automel.data.audio_files`). Inputs outside any plausible range (audio far beyond full scale,
features beyond any log-mel value) are refused naming the file, and every output is checked finite before it
is returned: nothing NaN reaches a file.

Shapes: features ``(T, n_mels)``; batches ``x (B, T, n_mels)``, ``mask (B, T)``; embeddings ``(N, E)``,
L2-normalised; probabilities ``(N, C)``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automel.data.audio_files import audio_suffixes, decode_audio, display_name, is_audio_file
from automel.data.batching import PAD_VALUE
from automel.data.features import checked_features, load_feature
from automel.data.frontend import FbankParams, compute_fbank
from automel.data.layout import METADATA, read_dataset
from automel.data.prepare import AUDIO_SUFFIXES
from automel.errors import AudioError, ConfigError, DataError, FrontendError
from automel.exporting import head_embedding
from automel.long_inputs import merge_windows, split_long, window_frames
from automel.model_config import ModelConfig
from automel.model_folder import load_run
from automel.outputs import atomic_file, atomic_files, check_output_file

__all__ = ["EMBEDDING_FORMATS", "FEATURE_SUFFIX", "InputItem", "Prediction", "SpeakerInference", "atomic_file",
           "collect_inputs", "embedding", "embedding_format", "embedding_ids_path", "featurize_audio",
           "frontend_params", "write_embeddings", "write_predictions"]

FEATURE_SUFFIX = ".pt"
EMBEDDING_FORMATS = (".npy", ".safetensors")
EMBEDDINGS_FORMAT = "automel-embeddings/1"  # the safetensors metadata's "format"
KNOWN_FRONTEND = "kaldi-native-fbank"
# Inference batches: whole utterances, at most this many per batch and this many padded frames in all.
MAX_BATCH, MAX_FRAMES = 64, 32_768
CHUNK = 512  # inputs featurised at a time: memory stays bounded for a folder of thousands of files


@dataclass(frozen=True)
class InputItem:
    """One utterance to run: its id in the output and the file it comes from (audio or ``.pt``), or its
    features ``(T, n_mels)`` in memory (:meth:`of_features`; then ``path`` only names it in messages)."""

    id: str
    path: Path
    inside: Path | None = None  # a data set's folder: a symbolic link leading out of it is refused unread
    array: np.ndarray | torch.Tensor | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of_features(cls, id: str, features: np.ndarray | torch.Tensor) -> InputItem:
        return cls(id, Path(f"<{id}>"), array=features)

    @property
    def is_audio(self) -> bool:
        return self.array is None and self.path.suffix.lower() != FEATURE_SUFFIX  # sniffed by collect_inputs


@dataclass(frozen=True)
class Prediction:
    """The ``top_k`` most probable speakers of one utterance, most probable first."""

    id: str
    speakers: tuple[str, ...]
    probabilities: tuple[float, ...]

    @property
    def speaker(self) -> str:
        """The most probable speaker."""
        return self.speakers[0]


def collect_inputs(inputs: Sequence[object]) -> list[InputItem]:
    """The utterances ``inputs`` name, in order; :class:`DataError` naming the first that is unusable.

    An audio or ``.pt`` file is one utterance (id: the path as given); an HW4 data set folder gives all
    its utterances (id: the feature file name); another folder gives the audio files under it (id: the
    path as given joined with the file's path inside it); features ``(T, n_mels)`` in memory (an array or
    a tensor, checked when they run) are one utterance (id: their position in ``inputs``). Ids must be unique.
    """
    if not inputs:
        raise DataError("no inputs: give audio files, .pt feature files, folders of audio or an HW4 data set")
    items: list[InputItem] = []
    for index, given in enumerate(inputs):
        if isinstance(given, np.ndarray | torch.Tensor):
            items.append(InputItem.of_features(str(index), given))
            continue
        if not isinstance(given, str | os.PathLike):
            raise DataError(f"input {index}: a {type(given).__name__} is not an input; give a path, a NumPy "
                            "array or a tensor (T, n_mels), or a list of them")
        path = Path(given)
        if path.is_dir():
            items += _dataset_items(path) if (path / METADATA).is_file() else _folder_items(path)
        elif path.is_file():
            # audio is decoded by content, whatever its name; a name libsndfile does not know is sniffed
            suffix = path.suffix.lower()
            if suffix != FEATURE_SUFFIX and suffix not in audio_suffixes() and not is_audio_file(path):
                raise DataError(f"{display_name(path)}: not an audio file libsndfile can decode "
                                f"({', '.join(sorted(AUDIO_SUFFIXES))}, mp3, ...) nor a {FEATURE_SUFFIX} feature file")
            items.append(InputItem(display_name(os.fspath(given)), path))
        else:
            raise DataError(f"{display_name(path)}: not found")
    seen: dict[str, Path] = {}
    for item in items:
        if item.id in seen:
            raise DataError(f"{item.path}: id {item.id!r} is also the id of {seen[item.id]}; ids must be unique")
        seen[item.id] = item.path
    return items


def _dataset_items(root: Path) -> list[InputItem]:
    dataset = read_dataset(root)
    return [InputItem(u.feature_path, root / u.feature_path, root) for u in dataset.train + dataset.test]


def _folder_items(folder: Path) -> list[InputItem]:
    suffixes = audio_suffixes()
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in suffixes and p.is_file())
    if not files:
        raise DataError(f"{folder}: no audio files ({', '.join(sorted(suffixes))}) and no {METADATA} "
                        "(not an HW4 data set)")
    return [InputItem(display_name(folder / p.relative_to(folder)), p) for p in files]


def frontend_params(record: ModelConfig, source: Path | str = "the model") -> FbankParams:
    """The audio front end ``record`` was trained with; :class:`FrontendError` when it is not recorded or unknown.

    ``automel train`` copies it from a prepared data set's ``metadata.json`` into ``config.json`` as
    ``dataset.features`` (``{"frontend": "kaldi-native-fbank", "sample_rate": ..., "n_mels": ...}``).
    """
    recorded = record.dataset.get("features")
    if not isinstance(recorded, dict) or not recorded:
        kind = record.dataset.get("kind", "hw4")
        raise FrontendError(f"{source}: was trained on {kind} features whose audio front end is unknown "
                            "(config.json records no dataset.features), so it cannot take audio; "
                            "give .pt feature files, or train on audio prepared with `automel data prepare`")
    options = dict(recorded)
    name = options.pop("frontend", None)
    if name != KNOWN_FRONTEND:
        raise FrontendError(f"{source}: records the audio front end {name!r}; automel computes only {KNOWN_FRONTEND!r}")
    known = {f.name for f in fields(FbankParams)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise FrontendError(f"{source}: the recorded front end has options automel does not know: {', '.join(unknown)}")
    try:
        params = FbankParams(**options)
    except TypeError as exc:
        raise FrontendError(f"{source}: the recorded front end is malformed ({exc})") from None
    if params.n_mels != record.n_mels:
        raise FrontendError(f"{source}: the recorded front end gives {params.n_mels} mel bins "
                            f"but the model takes {record.n_mels}")
    return params


def featurize_audio(path: Path, params: FbankParams) -> np.ndarray:
    """Fbank ``(T, n_mels)`` of one audio file; :class:`AudioError` naming it when it cannot be used."""
    try:
        wave = decode_audio(path, params.sample_rate)  # by content; checks the samples are finite and in range
    except (RuntimeError, ValueError, OSError, EOFError, TypeError) as exc:  # soundfile: RuntimeError subclasses
        detail = getattr(exc, "error_string", None) or str(exc).replace(str(path), "<file>")
        reason = " ".join(str(detail).split())[:200] or type(exc).__name__
        raise AudioError(f"{display_name(path)}: cannot decode audio ({reason})") from None
    if wave.size == 0:
        raise AudioError(f"{display_name(path)}: no audio samples")
    features = compute_fbank(wave, params)
    if not np.isfinite(features).all():
        raise AudioError(f"{display_name(path)}: its features are not finite")
    if features.shape[0] == 0:
        raise AudioError(f"{display_name(path)}: too short ({wave.size / params.sample_rate * 1000:.1f} ms gives no "
                         f"{params.frame_length_ms:g} ms frame)")
    return features


def embedding(model: nn.Module, x: Tensor, mask: Tensor) -> Tensor:
    """L2-normalised speaker embeddings ``(B, E)`` float32 of ``x (B, T, F)``, ``mask (B, T)``.

    The head's embedding layer: for a margin head the projection in front of its cosine (``Linear +
    BatchNorm`` of width ``embed_dim``, or the pooled vector when it has none); for any other head the
    pooled vector ``model.embed(x, mask)``. :class:`ConfigError` for a model without one (an ensemble).
    """
    _check_embeddable(model)
    pooled = cast(Tensor, model.embed(x, mask))  # type: ignore[operator]  # nn.Module.__getattr__ is untyped
    # One definition of "the head's embedding" for embed, verify and the exported files.
    return F.normalize(head_embedding(cast(nn.Module, model.head), pooled).float(), dim=-1)


class SpeakerInference:
    """A model loaded once for inference: featurise, batch, embed, predict.

    ``model`` is any ``model(x, mask) -> logits`` (an ensemble predicts but does not embed); ``record`` its
    ``config.json``; ``source`` names the model directory in messages.
    """

    def __init__(self, model: nn.Module, record: ModelConfig, source: Path | str = "the model",
                 device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.record = record
        self.source = Path(source)
        self._frontend: FbankParams | None = None
        # Told (input id, frames, windows) of each input long enough to run in windows (automel.long_inputs).
        self.on_windows: Callable[[str, int, int], None] | None = None

    @classmethod
    def load(cls, model_dir: Path, device: torch.device | str = "cpu") -> SpeakerInference:
        """Load a run directory, export or ensemble folder; :class:`ConfigError` naming a missing or corrupt file."""
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise ConfigError(f"{model_dir}: model directory not found")
        model, record = load_run(model_dir)
        return cls(model, record, model_dir, device)

    @property
    def speakers(self) -> tuple[str, ...]:
        return self.record.speakers

    @property
    def frontend(self) -> FbankParams:
        """The model's audio front end; :class:`FrontendError` if it has none (asked only when audio comes)."""
        if self._frontend is None:
            self._frontend = frontend_params(self.record, self.source)
        return self._frontend

    def features(self, item: InputItem) -> np.ndarray:
        """``(T, n_mels)`` float32 of one input: audio through the model's front end, ``.pt`` as stored."""
        if item.array is not None:
            return checked_features(item.array, self.record.n_mels, f"input {item.id!r}")
        if item.is_audio:
            return featurize_audio(item.path, self.frontend)
        return load_feature(item.path, self.record.n_mels, inside=item.inside)

    def embed(self, items: Sequence[InputItem]) -> np.ndarray:
        """L2-normalised embeddings ``(N, E)`` float32 of ``items``, in order (see :func:`embedding`)."""
        _check_embeddable(self.model, self.source)  # before any audio is decoded
        return self._run(items, lambda x, mask: embedding(self.model, x, mask), normalise=True)

    def predict_proba(self, items: Sequence[InputItem]) -> np.ndarray:
        """Softmax probabilities ``(N, C)`` float32 of ``items``, in order (no margin: no labels)."""
        return self._run(items, lambda x, mask: torch.softmax(self.model(x, mask).float(), dim=-1), normalise=False)

    def predict(self, items: Sequence[InputItem], top_k: int = 1) -> list[Prediction]:
        """The ``top_k`` most probable speakers of each item (``top_k`` is capped at the number of speakers)."""
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer) or top_k < 1:
            raise ConfigError(f"`top_k` must be a whole number of at least 1, got {top_k!r}")
        probs = self.predict_proba(items)
        k = min(top_k, len(self.speakers))
        rows: list[Prediction] = []
        for item, p in zip(items, probs, strict=True):
            best = np.argsort(-p, kind="stable")[:k]
            rows.append(Prediction(item.id, tuple(self.speakers[i] for i in best), tuple(float(p[i]) for i in best)))
        return rows

    @torch.no_grad()
    def _run(self, items: Sequence[InputItem], fn: Callable[[Tensor, Tensor], Tensor], normalise: bool) -> np.ndarray:
        """``fn(x, mask) -> (B, D)`` of each item, featurised ``CHUNK`` at a time: ``(N, D)`` in order.

        Long utterances run in overlapping windows whose outputs are averaged (:mod:`automel.long_inputs`;
        ``normalise``: L2-normalise the mean, for embeddings). :class:`DataError` naming the inputs whose
        output is not finite: nothing NaN is ever returned or written.
        """
        window = window_frames(self.record.params)
        outputs: list[np.ndarray] = []
        for start in range(0, len(items), CHUNK):
            part = items[start:start + CHUNK]
            features = [self.features(item) for item in part]
            pieces, owner = split_long(features, window)
            if self.on_windows is not None and len(owner) > len(part):
                for position, count in zip(*np.unique(owner, return_counts=True), strict=True):
                    if count > 1:
                        self.on_windows(part[int(position)].id, len(features[int(position)]), int(count))
            result: np.ndarray | None = None
            for index, x, mask in padded_batches(pieces, self.device):
                out = fn(x, mask).float().cpu().numpy()
                bad = ~np.isfinite(out).all(axis=1)
                if bad.any():
                    names = list(dict.fromkeys(part[int(owner[i])].id for i in index[bad].tolist()))
                    raise DataError(f"{names[0]}: the model's output is not finite (NaN or inf) for this input"
                                    + (f" and {len(names) - 1} more" if len(names) > 1 else "")
                                    + "; its features are outside what the model can take")
                if result is None:
                    result = np.empty((len(pieces), out.shape[1]), dtype=np.float32)
                result[index] = out
            assert result is not None
            outputs.append(merge_windows(result, owner, len(part), normalise))
        if not outputs:
            return np.zeros((0, 0), dtype=np.float32)
        return np.concatenate(outputs)


def padded_batches(features: Sequence[np.ndarray], device: torch.device) -> Iterator[tuple[np.ndarray, Tensor, Tensor]]:
    """Whole utterances sorted by length into padded batches: ``(positions, x (B,T,F), mask (B,T))``."""
    lengths = np.array([f.shape[0] for f in features], dtype=np.int64)
    order = np.argsort(-lengths, kind="stable")  # longest first: the first batch sets the widest shape
    start = 0
    while start < len(order):
        width = int(lengths[order[start]])
        stop = start + 1
        while stop < len(order) and stop - start < MAX_BATCH and (stop - start + 1) * width <= MAX_FRAMES:
            stop += 1
        index = order[start:stop]
        x = np.full((len(index), width, features[0].shape[1]), PAD_VALUE, dtype=np.float32)
        for row, i in enumerate(index.tolist()):
            x[row, : lengths[i]] = features[i]
        mask = torch.arange(width).unsqueeze(0) < torch.as_tensor(lengths[index]).unsqueeze(1)
        yield index, torch.from_numpy(x).to(device), mask.to(device)
        start = stop


def _check_embeddable(model: nn.Module, source: Path | str | None = None) -> None:
    if not callable(getattr(model, "embed", None)):
        where = f"{source}: " if source is not None else ""
        raise ConfigError(f"{where}the model ({type(model).__name__}) has no single embedding space (an ensemble's "
                          "members each have their own); use one member's folder, e.g. member-0/")


def embedding_ids_path(out: Path) -> Path:
    """Where the ids of a ``.npy`` embedding file go: ``emb.npy`` -> ``emb.ids.txt``, one id a line."""
    return Path(out).with_suffix(".ids.txt")


def embedding_format(out: Path) -> str:
    """``.npy`` or ``.safetensors``, from ``out``'s suffix; :class:`ConfigError` for anything else."""
    suffix = Path(out).suffix.lower()
    if suffix not in EMBEDDING_FORMATS:
        raise ConfigError(f"{out}: the embeddings file must end in {' or '.join(EMBEDDING_FORMATS)}")
    return suffix


def write_embeddings(out: Path, ids: Sequence[str], vectors: np.ndarray, metadata: dict[str, str] | None = None) -> \
        list[Path]:
    """Write ``vectors (N, E)`` with their ``ids``; return the files written (atomically).

    ``.npy``: the float32 matrix, and the ids one a line in :func:`embedding_ids_path`. ``.safetensors``:
    the tensor ``"embeddings"``, the ids as a JSON list in the metadata's ``"ids"``, plus ``metadata``.
    """
    out = Path(out)
    kind = embedding_format(out)
    for target in (out, embedding_ids_path(out)) if kind == ".npy" else (out,):
        check_output_file(target, parents=True)  # a folder or a device in the way: one line, nothing written
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(ids) != vectors.shape[0]:
        raise ValueError(f"write_embeddings: {len(ids)} ids for vectors of shape {vectors.shape}")
    for id_ in ids:
        if "\n" in id_ or "\r" in id_:
            raise DataError(f"{id_!r}: an id with a line break cannot be written")
    if kind == ".npy":
        ids_path = embedding_ids_path(out)
        with atomic_files([out, ids_path]) as (tmp, tmp_ids):  # both or neither, never a stray .ids.txt
            with tmp.open("wb") as fh:
                np.save(fh, vectors)
            tmp_ids.write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
        return [out, ids_path]
    from safetensors.numpy import save_file

    meta = {**(metadata or {}), "format": EMBEDDINGS_FORMAT, "ids": json.dumps(list(ids), ensure_ascii=False)}
    with atomic_file(out) as tmp:
        save_file({"embeddings": vectors}, str(tmp), metadata=meta)
    return [out]


def write_predictions(out: Path, predictions: Sequence[Prediction]) -> Path:
    """Write a CSV ``Id,Category,Probability[,Category2,Probability2,...]`` atomically: top-1 first.

    The first two columns are HW4's ``Id,Category``; every row has the same k.
    """
    check_output_file(out, parents=True)
    k = max((len(p.speakers) for p in predictions), default=1)
    header = ["Id"]
    for rank in range(1, k + 1):
        suffix = "" if rank == 1 else str(rank)
        header += [f"Category{suffix}", f"Probability{suffix}"]
    with atomic_file(Path(out)) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for p in predictions:
            row = [p.id]
            for speaker, prob in zip(p.speakers, p.probabilities, strict=True):
                row += [speaker, f"{prob:.6f}"]
            writer.writerow(row)
    return Path(out)
