"""Run directories: what ``automel train`` writes and ``automel export`` reproduces.

A run directory holds ``model.safetensors``, ``config.json`` (everything needed to rebuild the model:
plugin parameters, speaker mapping, feature parameters, data-set fingerprint, split), ``metrics.jsonl``
and ``output.csv``. Everything is written into a temporary folder first and renamed into place.

Temporary folders and files are named after the process that writes them (``.<name>.<pid>@<host>.<random>``),
so a later run can tell what a killed process left behind from what a live one is still writing, and clear
it (:func:`sweep_leftovers`). What is renamed into place gets the modes the umask gives, as any file the
user creates does (``mkdtemp`` and ``mkstemp`` would make it private).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automel.errors import ConfigError, DataError, DiskError
from automel.files import owner, sweep_leftovers
from automel.outputs import atomic_folder

FORMAT = "automel-run/1"
WEIGHTS, CONFIG, METRICS = "model.safetensors", "config.json", "metrics.jsonl"
ADAPTATION = "adaptation"  # config.json's record of what the model adapts to (automel.adapt)
SUBMISSION, CARD = "output.csv", "README.md"
ENSEMBLE = "ensemble.json"  # marks an ensemble folder (see automel.ensemble)
OVERHEAD = 1 << 18  # bytes beyond the weights that a run directory may need (JSON, card, submission)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    """The contents of ``config.json``."""

    params: dict[str, Any]
    n_mels: int
    speakers: tuple[str, ...]
    dataset: dict[str, Any]
    result: dict[str, Any]
    extra: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "params": self.params, "n_mels": self.n_mels, "speakers": list(self.speakers),
                "dataset": self.dataset, "result": self.result, **self.extra}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], source: Path) -> RunRecord:
        """Check ``data`` against the schema (:mod:`automel.model_config`): types and bounds, one line naming
        ``source`` and the field; the plugins' parameters are checked when the model is loaded."""
        from automel.model_config import check_depth, check_frontend, check_n_mels, check_speakers

        if data.get("format") != FORMAT:
            raise ConfigError(f"{source}: not an automel run config (format {data.get('format')!r})")
        check_depth(data, source)
        missing = [k for k in ("params", "n_mels", "speakers", "dataset", "result") if k not in data]
        if missing:
            raise ConfigError(f"{source}: incomplete run config (no {', '.join(repr(k) for k in missing)})")
        for key in ("params", "dataset", "result"):
            if not isinstance(data[key], dict):
                raise ConfigError(f"{source}: '{key}' must be a JSON object, got {type(data[key]).__name__}")
        features = data["dataset"].get("features")
        if isinstance(features, dict):
            check_frontend(features, source)
        extra = {k: v for k, v in data.items()
                 if k not in ("format", "params", "n_mels", "speakers", "dataset", "result")}
        return cls(dict(data["params"]), check_n_mels(data["n_mels"], source), check_speakers(data["speakers"], source),
                   dict(data["dataset"]), dict(data["result"]), extra)


def versions() -> dict[str, str]:
    import optuna
    import torch

    from automel._version import __version__

    return {"automel": __version__, "torch": torch.__version__, "optuna": optuna.__version__}


def write_run_dir(out: Path, state: Mapping[str, Any], record: RunRecord, metrics: Iterable[Mapping[str, Any]],
                  submission: list[tuple[str, str]] | None, card: str | None = None, replace: bool = False,
                  extra: Mapping[str, str] | None = None) -> Path:
    """Write a complete run directory atomically; refuse to overwrite an existing one unless ``replace``.

    ``extra`` maps further file names to their text (e.g. an export's ``export.json``)."""
    from safetensors.torch import save_file

    out = Path(out).resolve()
    needed = sum(v.numel() * v.element_size() for v in state.values()) + OVERHEAD
    with atomic_folder(out, replace, needed) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp / WEIGHTS),
                  metadata={"format": FORMAT})
        (tmp / CONFIG).write_text(json.dumps(record.to_json(), indent=2), encoding="utf-8")
        (tmp / METRICS).write_text("".join(json.dumps(dict(m)) + "\n" for m in metrics), encoding="utf-8")
        if submission is not None:
            write_submission_rows(tmp / SUBMISSION, submission)
        if card is not None:
            (tmp / CARD).write_text(card, encoding="utf-8")
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return out


def read_model_record(run_dir: Path) -> RunRecord:
    """The record of one model's run directory or export (:func:`automel.model_folder.read_record` also
    reads an ensemble folder's)."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise ConfigError(f"{run_dir}: no {CONFIG}; not a run directory or export")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply; not an automel config") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise ConfigError(f"{path}: not a usable JSON file ({str(exc).splitlines()[0][:120]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: not an automel config (a JSON {type(data).__name__}, not an object)")
    return RunRecord.from_json(data, path)


def load_model(run_dir: Path) -> tuple[Any, RunRecord]:
    """Rebuild one model's run directory or export with its saved weights (eval mode, CPU);
    :func:`automel.model_folder.load_run` also loads an ensemble folder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    record = read_model_record(run_dir)
    weights = Path(run_dir) / WEIGHTS
    try:  # read first: reading takes what the file holds, while building takes what config.json says
        state = load_file(str(weights))
    except (FileNotFoundError, SafetensorError, OSError) as exc:
        raise ConfigError(f"{weights}: cannot read weights ({exc})") from None
    model = _build_checked(record, Path(run_dir) / CONFIG, weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{Path(run_dir) / WEIGHTS}: weights do not fit {CONFIG} ({first})") from None
    return model.eval(), record


def _build_checked(record: RunRecord, config: Path, weights: Path) -> Any:
    """The model of ``record``, checked first so that a hostile ``config.json`` cannot crash or exhaust
    the process: parameters against the schema, then their count (on the ``meta`` device, no memory)
    against the size of the weights file that must hold them."""
    from automel.errors import PluginError
    from automel.model import build_model
    from automel.model_config import check_model_params, parameter_bytes

    check_model_params(record.params, config)
    try:
        needed = parameter_bytes(record.params, record.n_mels, len(record.speakers))
    except ConfigError as exc:
        raise ConfigError(f"{config}: {exc}") from None
    size = weights.stat().st_size if weights.is_file() else None
    if needed is not None and size is not None and needed > size:
        raise ConfigError(f"{config}: describes a model of at least {needed:,} bytes of weights, but {weights.name} "
                          f"holds {size:,} bytes; the config does not fit the weights")
    try:
        return build_model(record.params, record.n_mels, len(record.speakers))
    except (PluginError, ValueError, RuntimeError, TypeError, ZeroDivisionError) as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ConfigError(f"{config}: cannot build the model it describes ({first[:200]})") from None


def write_submission_rows(path: Path, rows: Iterable[tuple[str, str]]) -> None:
    """Write ``Id,Category`` rows atomically (temporary file, then rename), with the umask's mode."""
    path = Path(path)
    sweep_leftovers(path)
    tmp = path.with_name(f".{path.name}.{owner()}.{secrets.token_hex(4)}")
    try:
        with DiskError.guard(path.parent):
            with tmp.open("x", newline="", encoding="utf-8") as fh:  # "x": the umask applies, as to any new file
                writer = csv.writer(fh)
                writer.writerow(["Id", "Category"])
                writer.writerows(rows)
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def submission_rows(predictions: np.ndarray, paths: Iterable[str], speakers: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(p, speakers[int(k)]) for p, k in zip(paths, predictions.tolist(), strict=True)]


def check_compatible(record: RunRecord, n_mels: int, root: Path) -> None:
    if record.n_mels != n_mels:
        raise DataError(f"{root}: features have {n_mels} mel bins but the model expects {record.n_mels}")
