"""Run directories: what ``automel train`` writes and ``automel export`` reproduces.

A run directory holds ``model.safetensors``, ``config.json`` (everything needed to rebuild the model:
plugin parameters, speaker mapping, feature parameters, data-set fingerprint, split), ``metrics.jsonl``
and ``output.csv``. Everything is written into a temporary folder first and renamed into place.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from automel.errors import ConfigError, DataError

FORMAT = "automel-run/1"
WEIGHTS, CONFIG, METRICS = "model.safetensors", "config.json", "metrics.jsonl"
SUBMISSION, CARD = "output.csv", "README.md"
ENSEMBLE = "ensemble.json"  # marks an ensemble folder (see automel.ensemble)


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
        if data.get("format") != FORMAT:
            raise ConfigError(f"{source}: not an automel run config (format {data.get('format')!r})")
        try:
            extra = {k: v for k, v in data.items()
                     if k not in ("format", "params", "n_mels", "speakers", "dataset", "result")}
            return cls(dict(data["params"]), int(data["n_mels"]), tuple(data["speakers"]), dict(data["dataset"]),
                       dict(data["result"]), extra)
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: incomplete run config ({exc})") from None


def versions() -> dict[str, str]:
    import optuna
    import torch

    from automel import __version__

    return {"automel": __version__, "torch": torch.__version__, "optuna": optuna.__version__}


@contextmanager
def atomic_folder(out: Path, replace: bool = False) -> Iterator[Path]:
    """A temporary folder beside ``out`` to fill; on success it takes ``out``'s place whole.

    An existing non-empty ``out`` is refused unless ``replace``; it stays intact until the rename, and the
    temporary folder is removed if filling it fails.
    """
    out = Path(out).resolve()
    if out.exists() and any(out.iterdir()) and not replace:
        raise ConfigError(f"{out}: already exists and is not empty; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_run_dir(out: Path, state: Mapping[str, Any], record: RunRecord, metrics: Iterable[Mapping[str, Any]],
                  submission: list[tuple[str, str]] | None, card: str | None = None, replace: bool = False,
                  extra: Mapping[str, str] | None = None) -> Path:
    """Write a complete run directory atomically; refuse to overwrite an existing one unless ``replace``.

    ``extra`` maps further file names to their text (e.g. an export's ``export.json``)."""
    from safetensors.torch import save_file

    out = Path(out).resolve()
    with atomic_folder(out, replace) as tmp:
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


def read_record(run_dir: Path) -> RunRecord:
    """The record of a run directory or export; of an ensemble folder, the ensemble's (see automel.ensemble)."""
    if (Path(run_dir) / ENSEMBLE).is_file():
        from automel.ensemble import read_ensemble  # lazily: automel.ensemble imports this module

        return read_ensemble(run_dir)[0]
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise ConfigError(f"{run_dir}: no {CONFIG}; not a run directory or export")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    return RunRecord.from_json(data, path)


def load_run(run_dir: Path) -> tuple[Any, RunRecord]:
    """Rebuild the model of a run directory or export with its saved weights (eval mode, CPU).

    An ensemble folder (with ``ensemble.json``) gives an :class:`automel.ensemble.EnsembleModel`."""
    if (Path(run_dir) / ENSEMBLE).is_file():
        from automel.ensemble import load_ensemble

        return load_ensemble(run_dir)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from automel.model import build_model

    record = read_record(run_dir)
    model = build_model(record.params, record.n_mels, len(record.speakers))
    try:
        state = load_file(str(Path(run_dir) / WEIGHTS))
    except (FileNotFoundError, SafetensorError, OSError) as exc:
        raise ConfigError(f"{Path(run_dir) / WEIGHTS}: cannot read weights ({exc})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(f"{Path(run_dir) / WEIGHTS}: weights do not fit {CONFIG} ({first})") from None
    return model.eval(), record


def write_submission_rows(path: Path, rows: Iterable[tuple[str, str]]) -> None:
    """Write ``Id,Category`` rows atomically (temporary file, then rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
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
