"""A model folder, one model's or an ensemble's: the one module that writes, reads and loads them.

A run directory or export holds ``model.safetensors`` and ``config.json`` (:class:`~automel.model_config.
ModelConfig`: everything needed to rebuild the model), ``metrics.jsonl`` and, for an export, ``output.csv``
and ``README.md``. An ensemble folder holds ``ensemble.json`` and one such folder per member
(:mod:`automel.ensemble` has the model). Every command that takes "a model" reads it through here.
Everything is written into a temporary folder first and renamed into place (:func:`automel.outputs.atomic_folder`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from automel.ensemble import ENSEMBLE_FORMAT, EnsembleModel, check_weights
from automel.errors import ConfigError
from automel.model_config import ADAPTATION, FORMAT, ModelConfig, check_model_params, parameter_bytes
from automel.outputs import atomic_folder
from automel.submission import SUBMISSION, write_submission_rows

__all__ = ["CARD", "CONFIG", "ENSEMBLE", "METRICS", "WEIGHTS", "is_ensemble", "load_model", "load_run",
           "read_config", "read_model_config", "write_ensemble_dir", "write_run_dir"]

WEIGHTS, CONFIG, METRICS, CARD = "model.safetensors", "config.json", "metrics.jsonl", "README.md"
ENSEMBLE = "ensemble.json"  # marks an ensemble folder
OVERHEAD = 1 << 18  # bytes beyond the weights that a run directory may need (JSON, card, submission)


def is_ensemble(folder: Path) -> bool:
    return (Path(folder) / ENSEMBLE).is_file()


def read_config(folder: Path) -> ModelConfig:
    """The config of a run directory or export; of an ensemble folder, the ensemble's."""
    return read_ensemble(folder)[0] if is_ensemble(folder) else read_model_config(folder)


def load_run(folder: Path) -> tuple[Any, ModelConfig]:
    """The model of a run directory or export with its saved weights (eval mode, CPU), or of an ensemble
    folder an :class:`automel.ensemble.EnsembleModel`; :class:`ConfigError` naming a missing or broken file."""
    return load_ensemble(folder) if is_ensemble(folder) else load_model(folder)


def write_run_dir(out: Path, state: Mapping[str, Any], record: ModelConfig, metrics: Iterable[Mapping[str, Any]],
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
        _write_beside(tmp, submission, card, extra)
    return out


def _write_beside(folder: Path, submission: list[tuple[str, str]] | None, card: str | None,
                  extra: Mapping[str, str] | None) -> None:
    """What a model folder holds beside the model: the submission, the card, further named text files."""
    if submission is not None:
        write_submission_rows(folder / SUBMISSION, submission)
    if card is not None:
        (folder / CARD).write_text(card, encoding="utf-8")
    for name, text in (extra or {}).items():
        (folder / name).write_text(text, encoding="utf-8")


def read_model_config(run_dir: Path) -> ModelConfig:
    """The config of one model's run directory or export (:func:`read_config` also reads an ensemble folder's)."""
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
    return ModelConfig.from_json(data, path)


def load_model(run_dir: Path) -> tuple[Any, ModelConfig]:
    """Rebuild one model's run directory or export with its saved weights (eval mode, CPU);
    :func:`load_run` also loads an ensemble folder."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    record = read_model_config(run_dir)
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


def _build_checked(record: ModelConfig, config: Path, weights: Path) -> Any:
    """The model of ``record``, checked first so that a hostile ``config.json`` cannot crash or exhaust
    the process: parameters against the schema, then their count (on the ``meta`` device, no memory)
    against the size of the weights file that must hold them."""
    from automel.errors import PluginError
    from automel.model import build_model

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


def write_ensemble_dir(out: Path, members: Sequence[tuple[Mapping[str, Tensor], ModelConfig, Mapping[str, Any]]],
                       weights: Sequence[float] | np.ndarray, submission: list[tuple[str, str]] | None = None,
                       card: str | None = None, replace: bool = False, extra: Mapping[str, str] | None = None,
                       result: Mapping[str, Any] | None = None,
                       metrics: Sequence[Sequence[Mapping[str, Any]]] | None = None) -> Path:
    """Write an ensemble folder atomically; refuse to overwrite a non-empty one unless ``replace``.

    ``members``: ``(state_dict, record, info)`` per candidate, ``info`` free-form JSON (e.g. the trial
    number) kept in the member's entry of ``ensemble.json``. ``weights (M,)`` as from
    :func:`greedy_ensemble`: members of weight 0 are left out, the rest renormalised and written as
    ``member-0``, ``member-1``, ... in the order given. ``submission`` rows go to ``output.csv``, ``card``
    to ``README.md``, ``extra`` maps further top-level file names to their text, ``result`` (e.g. the
    ensemble's ``valid_acc``) is kept in ``ensemble.json`` and becomes the loaded record's ``result``.
    ``metrics``: one list of log rows per member (e.g. a refit's loss and learning rate), written to the
    member's ``metrics.jsonl``; without it those files are empty.
    """
    out = Path(out).resolve()
    if len(members) != len(weights) or (metrics is not None and len(metrics) != len(members)):
        raise ConfigError(f"{out}: {len(members)} members but {len(weights)} weights"
                          + ("" if metrics is None else f" and {len(metrics)} metrics lists"))
    logs = list(metrics) if metrics is not None else [[] for _ in members]
    checked = check_weights([float(w) for w in weights], str(out))
    kept = [(m, w) for m, w in zip(members, checked, strict=True) if w > 0]
    kept_logs = [log for log, w in zip(logs, checked, strict=True) if w > 0]
    total = sum(w for _, w in kept)
    first = kept[0][0][1]
    for _, record, _ in (m for m, _ in kept):
        if record.speakers != first.speakers or record.n_mels != first.n_mels:
            raise ConfigError(f"{out}: members disagree on speakers or n_mels; an ensemble needs the same classes")
    reserved = {ENSEMBLE, SUBMISSION, CARD}
    for name in extra or {}:
        if Path(name).name != name or name in reserved or name.startswith(("member-", ".")):
            raise ConfigError(f"{out}: extra file name {name!r} is not a free top-level file name")
    manifest = {"format": ENSEMBLE_FORMAT, "speakers": list(first.speakers), "n_mels": first.n_mels,
                "result": dict(result or {}),
                "members": [{**dict(info), "dir": f"member-{k}", "weight": w / total}
                            for k, ((_, _, info), w) in enumerate(kept)]}
    text = json.dumps(manifest, indent=2)  # fails here, before anything is written, if info is not JSON
    with atomic_folder(out, replace) as tmp:
        for k, (((state, record, _), _), log) in enumerate(zip(kept, kept_logs, strict=True)):
            write_run_dir(tmp / f"member-{k}", state, record, log, None)
        (tmp / ENSEMBLE).write_text(text, encoding="utf-8")
        _write_beside(tmp, submission, card, extra)
    return out


def read_ensemble(path: Path) -> tuple[ModelConfig, list[tuple[Path, float]]]:
    """The ensemble's record and its ``(member folder, weight)`` pairs; :class:`ConfigError` naming the file.

    The record takes ``params`` and ``dataset`` from the first member, the shared ``speakers`` and ``n_mels``,
    ``result`` from ``ensemble.json``, and ``extra["ensemble"]`` = the members' entries (plus their params).
    """

    source = Path(path) / ENSEMBLE
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read ensemble manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != ENSEMBLE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{source}: not an automel ensemble (format {found!r}, expected {ENSEMBLE_FORMAT!r})")
    speakers, n_mels, result = data.get("speakers"), data.get("n_mels"), data.get("result", {})
    if not isinstance(speakers, list) or not all(isinstance(s, str) for s in speakers) or not speakers:
        raise ConfigError(f"{source}: 'speakers' must be a non-empty list of names")
    if isinstance(n_mels, bool) or not isinstance(n_mels, int) or not isinstance(result, dict):
        raise ConfigError(f"{source}: 'n_mels' must be an integer and 'result' an object")
    entries = data.get("members")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f"{source}: 'members' must be a non-empty list of objects")
    weights = check_weights([e.get("weight") for e in entries], str(source))
    members: list[tuple[Path, float]] = []
    records: list[ModelConfig] = []
    for entry, weight in zip(entries, weights, strict=True):
        name = entry.get("dir")
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise ConfigError(f"{source}: member dir {name!r} must be a folder name inside the ensemble")
        folder = Path(path) / name
        if not folder.is_dir():
            raise ConfigError(f"{source}: member folder {folder} is missing")
        if (folder / ENSEMBLE).exists():
            raise ConfigError(f"{source}: member {folder} is itself an ensemble; nesting is not supported")
        record = read_model_config(folder)
        for field, want in (("speakers", tuple(speakers)), ("n_mels", n_mels)):
            if getattr(record, field) != want:
                raise ConfigError(f"{source}: member {folder / CONFIG} has other {field} than the ensemble")
        members.append((folder, weight / sum(weights)))
        records.append(record)
    info = [{**e, "weight": w, "params": r.params} for e, (_, w), r in zip(entries, members, records, strict=True)]
    first = records[0]
    adapted = {ADAPTATION: first.extra[ADAPTATION]} if ADAPTATION in first.extra else {}  # the members share it
    record = ModelConfig(dict(first.params), first.n_mels, first.speakers, dict(first.dataset),
                       dict(result),
                       {"ensemble": {"format": ENSEMBLE_FORMAT, "members": info}, **adapted})
    return record, members


def load_ensemble(path: Path) -> tuple[EnsembleModel, ModelConfig]:
    """Rebuild an ensemble folder's members with their weights (eval mode, CPU)."""

    record, members = read_ensemble(path)
    models = [load_model(folder)[0] for folder, _ in members]
    return EnsembleModel(models, [w for _, w in members]).eval(), record
