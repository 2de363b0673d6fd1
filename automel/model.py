"""The speaker model: encoder -> pooling -> head, composed from plugins by name.

``params`` is a flat mapping: ``"encoder"``, ``"pooling"``, ``"head"`` name the plugins and
namespaced keys (``"encoder.conformer.num_layers"``) set their configs; other keys (``train.*``)
are ignored here. Dimensions are chained and checked in one place, :func:`build_model`.

Shapes: ``x (B, T, n_mels)``, ``mask (B, T)`` bool, True = real frame; ``embed -> (B, P)``,
``forward -> logits (B, C)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn

from automel.errors import PluginError
from automel.normalize import DEFAULT_NORMALIZE, NORMALIZE_PARAM, FeatureNorm
from automel.plugin import KINDS, EncoderPlugin, HeadPlugin, Kind, Plugin, PoolingPlugin, set_head_progress
from automel.registry import Registry, default_registry

__all__ = ["SpeakerModel", "build_model", "plugin_names", "resolve_model_params"]

# A tiny probe batch (two utterances, the second padded) used to check that the built modules' real
# output shapes match their declared ``out_dim``: a plugin that ignores ``in_dim`` fails at build time
# with its name in the message, not with a bare shape error deep in the first training step.
_PROBE_LENGTHS = (6, 4)


class SpeakerModel(nn.Module):
    """``norm (B,T,F)->(B,T,F)``, ``encoder (B,T,F)->(B,T,D)``, ``pooling (B,T,D)->(B,P)``, ``head (B,P)->(B,C)``."""

    def __init__(self, encoder: nn.Module, pooling: nn.Module, head: nn.Module, norm: FeatureNorm) -> None:
        super().__init__()
        self.norm = norm
        self.encoder = encoder
        self.pooling = pooling
        self.head = head

    def embed(self, x: Tensor, mask: Tensor) -> Tensor:
        """The pooled utterance embedding ``(B, P)`` (independent of padding)."""
        return self.pooling(self.encoder(self.norm(x, mask), mask), mask)

    def forward(self, x: Tensor, mask: Tensor, labels: Tensor | None = None) -> Tensor:
        """Logits ``(B, C)``; margin heads apply their margin only when ``labels (B,)`` are given."""
        return self.head(self.embed(x, mask), labels)

    def set_progress(self, progress: float) -> None:
        """Training is ``progress`` (0..1) done: lets a margin head warm its margin up."""
        set_head_progress(self.head, progress)


def plugin_names(params: Mapping[str, Any]) -> dict[Kind, str]:
    """The chosen plugin of each kind; :class:`PluginError` if one is missing."""
    names: dict[Kind, str] = {}
    for kind in KINDS:
        value = params.get(kind)
        if not isinstance(value, str) or not value:
            raise PluginError(f"model parameters lack '{kind}' (the {kind} plugin's name); got {value!r}")
        names[kind] = value
    return names


def _plugins(params: Mapping[str, Any], registry: Registry | None) -> dict[Kind, type[Plugin]]:
    registry = registry if registry is not None else default_registry()
    return {kind: registry.get(kind, name) for kind, name in plugin_names(params).items()}


def resolve_model_params(params: Mapping[str, Any], registry: Registry | None = None) -> dict[str, Any]:
    """The complete model parameters: the three names plus every field of the three chosen configs.

    Defaults are filled in and other keys (other plugins', ``train.*``) dropped, so the result
    rebuilds the same model even if a plugin's defaults change later: what ``config.json`` records.
    """
    resolved: dict[str, Any] = {}
    for kind, plugin in _plugins(params, registry).items():
        resolved[kind] = plugin.name
        resolved.update(plugin.to_params(plugin.from_params(params)))
    return resolved


def build_model(
    params: Mapping[str, Any], n_mels: int, num_classes: int, registry: Registry | None = None, probe: bool = True
) -> SpeakerModel:
    """Build encoder, pooling and head from ``params``; :class:`PluginError` if dimensions do not chain.

    ``probe=False`` skips the probe batch: for a build on the ``meta`` device, which only counts parameters
    (:func:`automel.model_config.parameter_bytes`) and cannot run data.
    """
    plugins = _plugins(params, registry)
    # The registry checked each class against its kind's base when it was registered.
    enc_cls = cast(type[EncoderPlugin], plugins["encoder"])
    pool_cls = cast(type[PoolingPlugin], plugins["pooling"])
    head_cls = cast(type[HeadPlugin], plugins["head"])
    encoder = enc_cls.build(enc_cls.from_params(params), n_mels)
    enc_dim = _out_dim(encoder, enc_cls)
    pooling = pool_cls.build(pool_cls.from_params(params), enc_dim)
    pool_dim = _out_dim(pooling, pool_cls)
    head = head_cls.build(head_cls.from_params(params), pool_dim, num_classes)
    norm = FeatureNorm(n_mels, str(params.get(NORMALIZE_PARAM, DEFAULT_NORMALIZE)))
    model = SpeakerModel(encoder, pooling, head, norm)
    if probe:
        _probe(model, plugins, n_mels, enc_dim, pool_dim, num_classes)
    return model


def _out_dim(module: nn.Module, plugin: type[Plugin]) -> int:
    dim = getattr(module, "out_dim", None)
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise PluginError(
            f"{plugin.kind} '{plugin.name}' built a {type(module).__name__} without a positive int "
            f"'out_dim' (got {dim!r}); the next plugin's input size comes from it"
        )
    return dim


def _probe(
    model: SpeakerModel,
    plugins: Mapping[Kind, type[Plugin]],
    n_mels: int,
    enc_dim: int,
    pool_dim: int,
    num_classes: int,
) -> None:
    """Run the probe batch in eval mode and compare each stage's shape with what it declared."""
    lengths = torch.tensor(_PROBE_LENGTHS)
    mask = torch.arange(max(_PROBE_LENGTHS)).unsqueeze(0) < lengths.unsqueeze(1)
    # A private generator: building a model must not move the global RNG (seeded runs stay seeded).
    x = torch.randn(
        len(_PROBE_LENGTHS), max(_PROBE_LENGTHS), n_mels, generator=torch.Generator().manual_seed(0)
    )
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            frames = _stage(plugins["encoder"], lambda: model.encoder(x, mask), (2, mask.size(1), enc_dim))
            pooled = _stage(plugins["pooling"], lambda: model.pooling(frames, mask), (2, pool_dim))
            _stage(plugins["head"], lambda: model.head(pooled, None), (2, num_classes))
    finally:
        model.train(was_training)


def _stage(plugin: type[Plugin], run: Callable[[], Any], expected: tuple[int, ...]) -> Tensor:
    try:
        out = run()
    except (RuntimeError, TypeError, ValueError) as exc:  # torch's shape errors, a wrong forward signature
        raise PluginError(
            f"{plugin.kind} '{plugin.name}' failed on a probe batch of its declared input size: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(out, Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise PluginError(f"{plugin.kind} '{plugin.name}' returned shape {got}, expected {expected}")
    return out
