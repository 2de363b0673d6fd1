"""Deployable exports: a trained model as an ONNX or TorchScript file, with logits and speaker embeddings.

Both formats hold the same function (WeSpeaker's ``export_onnx.py`` / ``export_jit.py`` do the same)::

    inputs   features (B, T, n_mels) float32    log-mel frames; padded frames may hold anything
             mask     (B, T) bool               True = real frame
    outputs  logits    (B, C) float32           as ``model(features, mask)`` (no margin: no labels)
             embedding (B, E) float32           L2-normalised speaker embedding (:func:`embedding_and_logits`)

``B`` and ``T`` are dynamic axes. :data:`FORMATS` names the files (``model.onnx``, ``model.ts``) written
into an export folder beside ``model.safetensors``. A file is written to a temporary name, checked against
PyTorch on padded batches of other sizes than the one it was traced with (:func:`check_parity`, maximum
absolute difference below :data:`PARITY_TOLERANCE`) and only then renamed into place, so a model that
cannot take a format leaves nothing behind and raises :class:`~automel.errors.ExportError`.

Tracing records one path through the code: whatever a layer decides from the data of the example batch
is frozen into the file. :func:`automel.layers.always_masked` makes the masked layers take their masked
path (exact for every batch) while tracing; a plugin that branches on data by other means fails the
parity check, which names it.

ONNX needs the optional extra ``automel[onnx]`` (``onnx`` for the exporter, ``onnxruntime`` to check and
run the file). Both are imported only when needed; without them an ONNX export or load is one clear error.
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automel.errors import AutomelError, ExportError
from automel.layers import always_masked
from automel.model import SpeakerModel

__all__ = [
    "FORMATS",
    "INPUT_NAMES",
    "ONNX_EXTRA",
    "OUTPUT_NAMES",
    "PARITY_TOLERANCE",
    "ExportModule",
    "ExportedModel",
    "StagedExports",
    "check_parity",
    "describe",
    "embedding_and_logits",
    "export_model",
    "head_embedding",
    "load_exported",
    "parity",
    "parse_formats",
    "require_formats",
    "staged_exports",
]

FORMATS: dict[str, str] = {"onnx": "model.onnx", "torchscript": "model.ts"}
INPUT_NAMES = ("features", "mask")
OUTPUT_NAMES = ("logits", "embedding")
ONNX_OPSET = 17  # onnxruntime >= 1.13 runs it; LayerNormalization is a single op from 17 on
ONNX_EXTRA = "automel[onnx]"
PARITY_TOLERANCE = 1e-4
# The example batch a model is traced with, and the batches its file is then checked on: other batch
# sizes and lengths (dynamic axes), padding filled with large noise (a leak cannot hide in rounding), and
# one batch without padding (which eager PyTorch runs on its unpadded fast path).
TRACE_LENGTHS = (23, 16)
PARITY_BATCHES: tuple[tuple[int, ...], ...] = ((37, 9, 52, 20), (31,))
PAD_SCALE = 100.0
_SEED = 0


def describe(params: Mapping[str, Any]) -> str:
    """``encoder 'conformer' + pooling 'mean' + head 'softmax'``: how messages name a model."""
    return " + ".join(f"{kind} '{params.get(kind)}'" for kind in ("encoder", "pooling", "head"))


def parse_formats(values: str | Iterable[str] | None) -> tuple[str, ...]:
    """Format names from options (repeatable, each comma-separated), in order, without repeats.

    ``torchscript`` may be written ``ts`` or ``jit``; :class:`ExportError` names an unknown one.
    """
    if values is None:
        return ()
    items = [values] if isinstance(values, str) else list(values)
    aliases = {"ts": "torchscript", "jit": "torchscript"}
    chosen: list[str] = []
    for item in items:
        for raw in str(item).split(","):
            name = aliases.get(raw.strip().lower(), raw.strip().lower())
            if not name:
                continue
            if name not in FORMATS:
                raise ExportError(f"unknown export format {raw.strip()!r}; choose from {', '.join(FORMATS)}")
            if name not in chosen:
                chosen.append(name)
    return tuple(chosen)


def require_formats(values: str | Iterable[str] | None) -> tuple[str, ...]:
    """:func:`parse_formats`, then check that what the formats need is installed (before any long work)."""
    formats = parse_formats(values)
    if "onnx" in formats:
        _import_onnx()
        _import_onnxruntime()
    return formats


def _missing_extra(package: str) -> ExportError:
    return ExportError(f"ONNX export needs the optional package {package!r}, which is not installed: "
                       f"pip install '{ONNX_EXTRA}' (or run `make install`)")


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise _missing_extra("onnx") from None
    return onnx


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise _missing_extra("onnxruntime") from None
    return onnxruntime


# --- what an export computes ---


def head_embedding(head: nn.Module, pooled: Tensor) -> Tensor:
    """The head's speaker embedding of pooled vectors ``(B, P) -> (B, E)``, not yet normalised.

    A head with an embedding layer exposes it as ``projection`` (the margin heads' ``Linear + BatchNorm``;
    ``nn.Identity`` when they have none); for any other head (``softmax``, whose hidden layer belongs to
    the classifier) the embedding is the pooled vector itself.
    """
    projection = getattr(head, "projection", None)
    if not isinstance(projection, nn.Module):
        return pooled
    if not torch.amp.is_autocast_available(pooled.device.type):
        return projection(pooled.float())
    with torch.autocast(device_type=pooled.device.type, enabled=False):  # in float32, as the margin heads run
        return projection(pooled.float())


def embedding_and_logits(model: nn.Module, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """``(logits (B, C), embedding (B, E))`` of ``x (B, T, F)``, ``mask (B, T)`` in one pass; the embedding is
    :func:`head_embedding` of the pooled vector, L2-normalised, and the logits are ``model(x, mask)``'s.

    An ensemble (:class:`automel.ensemble.EnsembleModel`: ``members`` and their ``weights``) gives its own
    logits (the log of the weighted mean probabilities) and, as embedding, its members' embeddings each
    scaled by the square root of its weight and concatenated: unit length again, and the cosine of two
    such embeddings is the weighted mean of the members' cosines. Another kind of model is an
    :class:`ExportError`.
    """
    if isinstance(model, SpeakerModel):
        pooled = model.embed(x, mask)
        return model.head(pooled, None), F.normalize(head_embedding(model.head, pooled).float(), dim=-1)
    # An ensemble by shape, not class: automel.ensemble sits above this module (it reads run directories).
    members, weights = getattr(model, "members", None), getattr(model, "weights", None)
    if isinstance(members, nn.ModuleList) and isinstance(weights, Tensor):
        # EnsembleModel.forward's formula, computed here from the same pass as the embeddings.
        terms, parts = [], []
        for member, weight in zip(members, weights.tolist(), strict=True):
            if weight <= 0:
                continue
            logits, embedding = embedding_and_logits(member, x, mask)
            terms.append(torch.log_softmax(logits.float(), dim=-1) + math.log(weight))
            parts.append(math.sqrt(weight) * embedding)
        return torch.logsumexp(torch.stack(terms), dim=0), F.normalize(torch.cat(parts, dim=-1), dim=-1)
    raise ExportError(f"cannot export a {type(model).__name__}: only automel's SpeakerModel and EnsembleModel "
                      "have logits and an embedding layer")


class ExportModule(nn.Module):
    """What the files hold: ``forward(features, mask) -> (logits, embedding)`` of ``model``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        # A new module starts in train mode, and the ONNX exporter restores the mode it found when it is
        # done: without this it would switch ``model`` (dropout and all) to train mode behind our back.
        self.train(model.training)

    def forward(self, features: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        return embedding_and_logits(self.model, features, mask)


def _padded_batch(lengths: Sequence[int], n_mels: int, seed: int) -> tuple[Tensor, Tensor]:
    """``x (B, T, n_mels)`` with standard normal real frames and ``PAD_SCALE`` noise in the padding, ``mask``."""
    generator = torch.Generator().manual_seed(seed)
    frames = max(lengths)
    mask = torch.arange(frames).unsqueeze(0) < torch.tensor(list(lengths)).unsqueeze(1)
    real = torch.randn(len(lengths), frames, n_mels, generator=generator)
    noise = PAD_SCALE * torch.randn(len(lengths), frames, n_mels, generator=generator)
    return torch.where(mask.unsqueeze(-1), real, noise), mask


# --- writing ---


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


@contextmanager
def _quiet_stdout() -> Iterator[None]:
    """File descriptor 1 goes to the null device for the block.

    The ONNX exporter turns torch's C++ log on for every export and, when an operator has no ONNX form,
    writes the whole traced graph to the process's stdout (not ``sys.stdout``). The error it raises says
    the same in one line, which :class:`ExportError` carries.
    """
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # no usable stdout (closed, replaced): nothing to hide
        saved = -1
    if saved < 0:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def _trace_onnx(module: ExportModule, example: tuple[Tensor, Tensor], path: Path) -> None:
    # The TorchScript-based exporter: fast (seconds, where the dynamo one takes tens) and exact here.
    axes = {"features": {0: "batch", 1: "frames"}, "mask": {0: "batch", 1: "frames"},
            "logits": {0: "batch"}, "embedding": {0: "batch"}}
    with _quiet_stdout():
        torch.onnx.export(module, example, str(path), input_names=list(INPUT_NAMES),
                          output_names=list(OUTPUT_NAMES), dynamic_axes=axes, opset_version=ONNX_OPSET,
                          dynamo=False, do_constant_folding=True)


def _trace_torchscript(module: ExportModule, example: tuple[Tensor, Tensor], path: Path) -> None:
    traced = torch.jit.trace(module, example, check_trace=False)
    torch.jit.save(traced, str(path))


_WRITERS = {"onnx": _trace_onnx, "torchscript": _trace_torchscript}


def _write_one(model: nn.Module, fmt: str, path: Path, n_mels: int, what: str) -> None:
    """Trace ``model`` (a CPU copy in eval mode) into ``path`` and check it against PyTorch."""
    if fmt == "onnx":
        _import_onnx()
        _import_onnxruntime()
    example = _padded_batch(TRACE_LENGTHS, n_mels, _SEED)
    try:
        with warnings.catch_warnings(), always_masked(), torch.no_grad():
            # TracerWarnings (a Python value taken from a tensor) are what the parity check below judges.
            warnings.simplefilter("ignore")
            _WRITERS[fmt](ExportModule(model), example, path)
    except AutomelError:
        raise
    except Exception as exc:  # torch's exporters raise many kinds: an op without an ONNX form, a trace error
        raise ExportError(f"{what} cannot be exported to {fmt}: {_first_line(exc)}") from exc
    check_parity(model, path, n_mels, what=what)


class StagedExports:
    """Files written and checked in a temporary folder; :meth:`install` moves them into an export folder."""

    def __init__(self, files: Mapping[str, Path]) -> None:
        self.files = dict(files)

    def install(self, out_dir: Path) -> dict[str, Path]:
        """Rename every staged file into ``out_dir`` (same file system: each rename is atomic)."""
        placed = {}
        for fmt, staged in self.files.items():
            target = Path(out_dir) / FORMATS[fmt]
            os.replace(staged, target)
            placed[fmt] = target
        return placed


@contextmanager
def staged_exports(model: nn.Module, formats: str | Iterable[str] | None, n_mels: int, near: Path,
                   what: str = "the model") -> Iterator[StagedExports]:
    """Write ``formats`` of ``model`` into a temporary folder in ``near`` (created if missing); the block
    then writes the rest of an export and calls :meth:`StagedExports.install`. Whatever is not installed is
    removed on the way out; an :class:`ExportError` before the block leaves nothing written.

    ``model`` is not touched: a CPU copy in eval mode is traced.
    """
    chosen = parse_formats(formats)
    if not chosen:
        yield StagedExports({})
        return
    cpu = copy.deepcopy(model).to("cpu").eval()
    Path(near).mkdir(parents=True, exist_ok=True)
    from automel.files import owned_tempdir  # named after this process: a later export clears it if killed

    folder = owned_tempdir(Path(near) / "automel-export")
    try:
        files = {}
        for fmt in chosen:
            files[fmt] = folder / FORMATS[fmt]
            _write_one(cpu, fmt, files[fmt], n_mels, what)
        yield StagedExports(files)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def export_model(model: nn.Module, out_dir: Path, formats: str | Iterable[str], n_mels: int,
                 what: str = "the model") -> dict[str, Path]:
    """Write ``formats`` of ``model`` into ``out_dir``, replacing files of the same name; all or nothing.

    A file in the way of ``out_dir``, or a folder in the way of a file, is a :class:`ConfigError` before any
    tracing (:mod:`automel.outputs`).
    """
    from automel.outputs import check_output_file, check_output_folder

    check_output_folder(out_dir)
    for fmt in parse_formats(formats):
        check_output_file(Path(out_dir) / FORMATS[fmt], parents=True)
    with staged_exports(model, formats, n_mels, out_dir, what) as staged:
        return staged.install(out_dir)


# --- loading and running ---


@dataclass
class ExportedModel:
    """An exported file ready to run: ``model(features (B,T,F), mask (B,T)) -> (logits, embedding)`` as numpy.

    ONNX runs in onnxruntime on the CPU with ``threads`` intra-op threads (None: onnxruntime's choice);
    TorchScript runs in torch (its thread count is torch's own, :func:`torch.set_num_threads`).
    """

    path: Path
    format: str
    runner: Any

    def __call__(self, features: np.ndarray | Tensor, mask: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(_numpy(features), dtype=np.float32)
        m = np.ascontiguousarray(_numpy(mask), dtype=np.bool_)
        if self.format == "onnx":
            logits, embedding = self.runner.run(list(OUTPUT_NAMES), {"features": x, "mask": m})
            return np.asarray(logits), np.asarray(embedding)
        with torch.no_grad():
            logits, embedding = self.runner(torch.from_numpy(x), torch.from_numpy(m))
        return logits.numpy(), embedding.numpy()


def _numpy(value: np.ndarray | Tensor) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


def load_exported(path: Path, threads: int | None = None) -> ExportedModel:
    """Load ``model.onnx`` (onnxruntime) or ``model.ts`` (TorchScript), or the one in an export folder."""
    path = Path(path)
    if path.is_dir():
        found = [path / name for name in FORMATS.values() if (path / name).is_file()]
        if not found:
            raise ExportError(f"{path}: no exported model ({' or '.join(FORMATS.values())}); "
                              "write one with `automel export --format`")
        path = found[0]
    fmt = next((f for f, name in FORMATS.items() if path.suffix == Path(name).suffix), None)
    if fmt is None:
        raise ExportError(f"{path}: not an exported model (expected a .onnx or .ts file)")
    if not path.is_file():
        raise ExportError(f"{path}: no such file")
    try:
        if fmt == "onnx":
            ort = _import_onnxruntime()
            options = ort.SessionOptions()
            if threads is not None:
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
            runner: Any = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is in maintenance, not gone
                runner = torch.jit.load(str(path), map_location="cpu")
    except AutomelError:
        raise
    except Exception as exc:  # a truncated or foreign file: onnxruntime and torch raise their own kinds
        raise ExportError(f"{path}: cannot load the {fmt} model ({_first_line(exc)})") from None
    return ExportedModel(path, fmt, runner)


# --- parity ---


def parity(model: nn.Module, exported: ExportedModel, n_mels: int,
           batches: Sequence[Sequence[int]] = PARITY_BATCHES) -> tuple[float, float]:
    """Maximum absolute differences ``(logits, embedding)`` between ``exported`` and PyTorch (eval mode, CPU)
    on padded batches of the given lengths."""
    reference = copy.deepcopy(model).to("cpu").eval()
    worst = [0.0, 0.0]
    for k, lengths in enumerate(batches):
        x, mask = _padded_batch(lengths, n_mels, _SEED + 1 + k)
        with torch.no_grad():
            want = embedding_and_logits(reference, x, mask)
        got = exported(x, mask)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            if g.shape != tuple(w.shape):
                raise ExportError(f"{exported.path}: {OUTPUT_NAMES[i]} has shape {g.shape}, PyTorch gives "
                                  f"{tuple(w.shape)} for lengths {tuple(lengths)}")
            diff = float(np.abs(g.astype(np.float64) - w.double().numpy()).max()) if g.size else 0.0
            worst[i] = max(worst[i], diff if math.isfinite(diff) else math.inf)
    return worst[0], worst[1]


def check_parity(model: nn.Module, path: Path, n_mels: int, tolerance: float = PARITY_TOLERANCE,
                 what: str = "the model") -> tuple[float, float]:
    """:func:`parity` of the file at ``path``; :class:`ExportError` when either difference exceeds ``tolerance``."""
    exported = load_exported(path, threads=1)
    fmt = exported.format
    try:
        logits, embedding = parity(model, exported, n_mels)
    except AutomelError:
        raise
    except Exception as exc:  # the file runs on the trace's shapes only, say
        raise ExportError(f"{what}: the {fmt} export fails on other batch sizes or lengths than it was traced "
                          f"with ({_first_line(exc)})") from exc
    if not (logits <= tolerance and embedding <= tolerance):
        raise ExportError(
            f"{what}: the {fmt} export differs from PyTorch by up to {logits:.3g} in logits and {embedding:.3g} "
            f"in embeddings (> {tolerance:g}) on padded batches; does a plugin branch on the data? "
            f"A trace records one path"
        )
    return logits, embedding
