"""The schema of a model folder's ``config.json``, checked before anything is built from it.

A model folder may come from anyone: a hand-edited ``config.json`` must not crash the process (a zero
frame shift divides by zero inside the front end), exhaust its memory (``num_layers: 1000000``) or load
silently wrong (``speakers: "abcd"`` would name ten speakers by letters). Every field is checked for its
JSON type, its finiteness and its bounds, and a fault is one :class:`ConfigError` naming the file and
the field.

Plugin parameters are checked generically, so a plugin from another package is covered as well as the
built-ins: the type comes from the plugin's config dataclass (``Plugin.from_params``), and the bounds come
from the plugin's own search space, recorded by running its ``suggest`` on a recording trial at both
search scales. A parameter searched over positive values must be positive, one searched within [0, 1] must
stay there (dropout, margins), and none may exceed :data:`SPACE_FACTOR` times the largest value searched
(a model sixteen times wider or deeper than any search tries is no model anyone trained). Integers not in
any search space are capped at :data:`MAX_INT`. Finally the model is built on PyTorch's ``meta`` device
(no memory) to count its parameters, which must fit in the weights file that comes with it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automel.errors import ConfigError, DataError, PluginError
from automel.plugin import KINDS, Plugin, using_search_scale

__all__ = ["MAX_DEPTH", "MAX_INT", "MAX_N_MELS", "MAX_SPEAKERS", "SPACE_FACTOR", "Bounds", "check_depth",
           "check_frontend", "check_model_params", "check_n_mels", "check_speakers", "parameter_bytes",
           "search_bounds"]

MAX_DEPTH = 32  # JSON nesting of a config; automel writes at most 5 levels
MAX_N_MELS = 1024
MAX_SPEAKERS = 1_000_000
MAX_NAME = 1000  # characters of one speaker name
MAX_INT = 1 << 16  # any integer plugin parameter that no search space bounds
MAX_FLOAT = 1e6  # the magnitude of any float plugin parameter
SPACE_FACTOR = 16  # a parameter may be this many times the largest value its plugin's search tries
MAX_PARAMETERS = 2_000_000_000
KNOWN_WINDOWS = ("povey", "hamming", "hanning", "rectangular", "blackman", "sine")
MAX_SAMPLE_RATE = 384_000


@dataclass(frozen=True)
class Bounds:
    """What a plugin's search space says of one numeric parameter: its least and largest value searched."""

    low: float
    high: float
    fraction: bool  # a float searched within [0, 1]


def check_depth(data: object, source: Path | str, limit: int = MAX_DEPTH) -> None:
    """:class:`ConfigError` when ``data`` (parsed JSON) nests deeper than ``limit``; iterative, no recursion."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                raise ConfigError(f"{source}: nested deeper than {limit} levels; not an automel config")
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)


def check_n_mels(value: object, source: Path | str, field: str = "n_mels") -> int:
    """A whole number of mel bins in ``1 .. MAX_N_MELS`` (a string or a float is refused, not converted)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_N_MELS:
        raise ConfigError(f"{source}: '{field}' must be a whole number from 1 to {MAX_N_MELS}, got {_show(value)}")
    return value


def check_speakers(value: object, source: Path | str) -> tuple[str, ...]:
    """A list of unique, non-empty names (a string or an object would give silently wrong names)."""
    if not isinstance(value, list):
        raise ConfigError(f"{source}: 'speakers' must be a list of speaker names, got a JSON {_json_type(value)}")
    if not value or len(value) > MAX_SPEAKERS:
        raise ConfigError(f"{source}: 'speakers' must name 1 to {MAX_SPEAKERS} speakers, got {len(value)}")
    seen: set[str] = set()
    for index, name in enumerate(value):
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise ConfigError(f"{source}: 'speakers'[{index}] must be a non-empty name of at most {MAX_NAME} "
                              f"characters, got {_show(name)}")
        if name in seen:
            raise ConfigError(f"{source}: 'speakers'[{index}] {name!r} is listed twice; names must be unique")
        seen.add(name)
    return tuple(value)


def check_frontend(features: Mapping[str, Any], source: Path | str) -> None:
    """The recorded audio front end's numbers: a zero frame shift would divide by zero in the fbank code."""
    def number(name: str, low: float, high: float, *, whole: bool = False, low_open: bool = False) -> None:
        if name not in features:
            return
        value = features[name]
        kind = int if whole else (int, float)
        ok = isinstance(value, kind) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (value > low if low_open else value >= low) and value <= high
        if not ok:
            above = f"above {low:g}" if low_open else f"at least {low:g}"
            raise ConfigError(f"{source}: 'dataset.features.{name}' must be a {'whole ' if whole else ''}number "
                              f"{above} and at most {high:g}, got {_show(value)}")

    number("sample_rate", 1000, MAX_SAMPLE_RATE, whole=True)
    number("n_mels", 1, MAX_N_MELS, whole=True)
    number("frame_length_ms", 1.0, 1000.0)
    number("frame_shift_ms", 1.0, 1000.0)
    number("dither", 0.0, 1e6)
    number("waveform_scale", 0.0, 1e9, low_open=True)
    rate, shift = features.get("sample_rate"), features.get("frame_shift_ms")
    if isinstance(rate, int) and isinstance(shift, int | float) and rate * shift / 1000 < 1:
        raise ConfigError(f"{source}: 'dataset.features.frame_shift_ms' {shift} is less than one sample at {rate} Hz")
    if "window" in features and features["window"] not in KNOWN_WINDOWS:
        raise ConfigError(f"{source}: 'dataset.features.window' must be one of {', '.join(KNOWN_WINDOWS)}, "
                          f"got {_show(features['window'])}")


def check_model_params(params: Mapping[str, Any], source: Path | str, registry: Any = None) -> None:
    """Every parameter of the three chosen plugins: JSON scalar type, finite, within the search space's
    bounds (see the module's docstring), then the plugin's own config check. ``train.normalize`` too."""
    from automel.model import plugin_names
    from automel.normalize import DEFAULT_NORMALIZE, NORMALIZE_MODES, NORMALIZE_PARAM
    from automel.registry import default_registry

    registry = registry if registry is not None else default_registry()
    try:
        names = plugin_names(params)
        plugins = {kind: registry.get(kind, name) for kind, name in names.items()}
    except PluginError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    for kind in KINDS:
        plugin = plugins[kind]
        space = search_bounds(plugin)
        prefix = f"{kind}.{plugin.name}."
        for key, value in params.items():
            if key.startswith(prefix):
                _check_value(f"params.{key}", value, space.get(key), source)
        try:
            plugin.from_params(params)
        except Exception as exc:  # a plugin's __post_init__ may raise anything on odd values
            raise ConfigError(f"{source}: params of {kind} '{plugin.name}': {_first_line(exc)}") from None
    normalize = params.get(NORMALIZE_PARAM, DEFAULT_NORMALIZE)
    if normalize not in NORMALIZE_MODES:
        raise ConfigError(f"{source}: 'params.{NORMALIZE_PARAM}' must be one of {', '.join(NORMALIZE_MODES)}, "
                          f"got {_show(normalize)}")


def parameter_bytes(params: Mapping[str, Any], n_mels: int, num_classes: int) -> int | None:
    """The least bytes the model's parameters and buffers take (2 a value, as float16 would), counted on
    the ``meta`` device, which allocates nothing; None when a plugin cannot be built there."""
    import torch

    from automel.model import build_model

    try:
        with torch.device("meta"):
            model = build_model(params, n_mels, num_classes, probe=False)
    except Exception:  # the real build, right after, reports what is wrong
        return None
    values = sum(p.numel() for p in model.parameters()) + sum(b.numel() for b in model.buffers())
    if values > MAX_PARAMETERS:
        raise ConfigError(f"the model has {values:,} parameters, more than automel loads ({MAX_PARAMETERS:,})")
    return 2 * values


class _RecordingTrial:
    """Stands in for an Optuna trial: records each suggestion's range and answers its low (or high) end."""

    def __init__(self, take_high: bool) -> None:
        self.take_high = take_high
        self.ranges: dict[str, tuple[float, float, bool]] = {}
        self.params: dict[str, Any] = {}
        self.number = 0

    def _note(self, name: str, low: float, high: float, is_float: bool) -> None:
        self.ranges[name] = (low, high, is_float)

    def suggest_int(self, name: str, low: int, high: int, *args: Any, **kwargs: Any) -> int:
        self._note(name, low, high, False)
        return high if self.take_high else low

    def suggest_float(self, name: str, low: float, high: float, *args: Any, **kwargs: Any) -> float:
        self._note(name, low, high, True)
        return high if self.take_high else low

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        options = list(choices)
        numbers = [c for c in options if isinstance(c, int | float) and not isinstance(c, bool)]
        if numbers:
            self._note(name, min(numbers), max(numbers), any(isinstance(c, float) for c in numbers))
        return options[-1] if self.take_high else options[0]

    def __getattr__(self, name: str) -> Any:  # anything else a plugin asks of a trial: not part of the space
        raise AttributeError(name)


_SPACES: dict[type[Plugin], dict[str, Bounds]] = {}


def search_bounds(plugin: type[Plugin]) -> dict[str, Bounds]:
    """The numeric ranges of ``plugin``'s search space at both scales, by parameter name (cached).

    A plugin whose ``suggest`` needs more of a trial than suggestions simply declares no bounds."""
    if plugin in _SPACES:
        return _SPACES[plugin]
    found: dict[str, Bounds] = {}
    for scale in ("cpu", "gpu"):
        for take_high in (False, True):
            trial = _RecordingTrial(take_high)
            try:
                with using_search_scale(scale):
                    plugin.suggest(trial)  # type: ignore[arg-type]
            except Exception:  # what was recorded before the failure still counts
                pass
            for name, (low, high, is_float) in trial.ranges.items():
                old = found.get(name)
                low, high = (min(low, old.low), max(high, old.high)) if old else (low, high)
                found[name] = Bounds(float(low), float(high), is_float and low >= 0.0 and high <= 1.0)
    _SPACES[plugin] = found
    return found


def _check_value(field: str, value: object, bounds: Bounds | None, source: Path | str) -> None:
    if value is None or isinstance(value, bool | str):
        return  # the plugin's config types decide (from_params)
    if not isinstance(value, int | float):
        raise ConfigError(f"{source}: '{field}' must be a number, a string, true/false or null, "
                          f"got a JSON {_json_type(value)}")
    if not math.isfinite(value):
        raise ConfigError(f"{source}: '{field}' must be a finite number, got {value}")
    cap = MAX_INT if isinstance(value, int) else MAX_FLOAT
    if abs(value) > cap:
        raise ConfigError(f"{source}: '{field}' = {_show(value)} is out of range (at most {cap:g} in size)")
    if bounds is None:
        return
    if bounds.low > 0 and value <= 0:
        raise ConfigError(f"{source}: '{field}' must be positive (its search space is {_span(bounds)}), got {value}")
    if bounds.low >= 0 and value < 0:
        raise ConfigError(f"{source}: '{field}' must not be negative (its search space is {_span(bounds)}), "
                          f"got {value}")
    if bounds.fraction and value > 1:
        raise ConfigError(f"{source}: '{field}' must lie in [0, 1] (its search space is {_span(bounds)}), got {value}")
    if bounds.high > 0 and value > SPACE_FACTOR * bounds.high:
        raise ConfigError(f"{source}: '{field}' = {value} is more than {SPACE_FACTOR} times the largest value "
                          f"its search space tries ({bounds.high:g}); refused so a config cannot exhaust memory")


def _span(bounds: Bounds) -> str:
    return f"{bounds.low:g} to {bounds.high:g}"


def _json_type(value: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _first_line(exc: BaseException) -> str:
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return text or type(exc).__name__


# -- config.json itself -------------------------------------------------------------------------------------

FORMAT = "automel-run/1"
ADAPTATION = "adaptation"  # config.json's record of what the model adapts to (automel.adapt)


@dataclass(frozen=True)
class ModelConfig:
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
    def from_json(cls, data: Mapping[str, Any], source: Path) -> ModelConfig:
        """Check ``data`` against the schema (:mod:`automel.model_config`): types and bounds, one line naming
        ``source`` and the field; the plugins' parameters are checked when the model is loaded."""
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


def check_compatible(record: ModelConfig, n_mels: int, root: Path) -> None:
    if record.n_mels != n_mels:
        raise DataError(f"{root}: features have {n_mels} mel bins but the model expects {record.n_mels}")
