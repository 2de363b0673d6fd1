"""How the contract checks drive each kind of plugin: one :class:`KindAdapter` per kind in :data:`ADAPTERS`.

A check never asks which kind of plugin it holds: it asks the kind's adapter to build the module, make its
inputs, call it and pick the outputs that padding must not reach. A new kind of plugin is one more entry.

Shapes, with ``B`` batch, ``T`` frames, ``D`` input width, ``C`` classes (as :mod:`automel.plugin` has them):

- encoder: ``x (B, T, D), mask (B, T) -> (B, T, out_dim)``; its real frames are ``out[mask]``;
- pooling: ``x (B, T, D), mask (B, T) -> (B, out_dim)``;
- head: ``embedding (B, D), labels (B,) | None -> logits (B, C)``; it sees no padding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automel.plugin import EncoderPlugin, HeadPlugin, Kind, Plugin, PoolingPlugin

LENGTHS = (9, 5, 13, 7)  # ragged on purpose: every utterance but the longest is padded
PAD_SCALE = 100.0  # padded frames hold noise this large: leaks cannot hide in rounding


@dataclasses.dataclass(frozen=True)
class KindAdapter:
    """What the checks need to know about one kind of plugin (see the module docstring for the shapes)."""

    in_dim: int  # the input width the checks use unless told another
    # (plugin, config, in_dim, num_classes) -> the built module, checked for what the kind promises
    build: Callable[[type[Plugin], Any, int, int], nn.Module]
    # (mask (B, T), in_dim) -> inputs: frames (B, T, D) with large noise in the padding, or rows (B, D)
    inputs: Callable[[Tensor, int], Tensor]
    # (module, x, mask (B, T), labels (B,) | None) -> the module's output
    call: Callable[[nn.Module, Tensor, Tensor, Tensor | None], Tensor]
    # (module, mask (B, T), num_classes) -> the documented output shape
    output_shape: Callable[[nn.Module, Tensor, int], tuple[int, ...]]
    # (output, mask (B, T)) -> the outputs that belong to real frames (all of them but an encoder's padding)
    real: Callable[[Tensor, Tensor], Tensor]
    # (x, mask (B, T), i) -> item ``i`` on its own, as a batch of one: (x, mask)
    alone: Callable[[Tensor, Tensor, int], tuple[Tensor, Tensor]]
    # (real outputs, labels (B,)) -> a scalar loss that reaches every output
    loss: Callable[[Tensor, Tensor], Tensor]
    item: str  # item ``i`` of a batch in messages: formatted with ``i`` and ``length``
    leak_hint: str  # what it means when an item in a batch differs from it alone
    uses_labels: bool  # the output may depend on labels (margin heads): checked with and without them
    padded: bool  # the inputs hold padded frames: the train-mode masking check applies


def label(plugin: type[Plugin]) -> str:
    """``encoder 'conformer'``: how messages name a plugin."""
    return f"{plugin.kind} '{plugin.name}'"


def _build_frames(plugin: type[Plugin], config: Any, in_dim: int, num_classes: int) -> nn.Module:
    """An encoder or pooling module; it must say its output width in ``out_dim``."""
    module = cast("type[EncoderPlugin] | type[PoolingPlugin]", plugin).build(config, in_dim)
    assert isinstance(getattr(module, "out_dim", None), int), f"{label(plugin)}: module has no int out_dim"
    return module


def _build_head(plugin: type[Plugin], config: Any, in_dim: int, num_classes: int) -> nn.Module:
    return cast("type[HeadPlugin]", plugin).build(config, in_dim, num_classes)


def padded_frames(mask: Tensor, in_dim: int) -> Tensor:
    """``x (B, T, in_dim)``: standard normal real frames, ``PAD_SCALE`` times larger noise where ``mask`` is False."""
    x = torch.randn(*mask.shape, in_dim)
    return torch.where(mask.unsqueeze(-1), x, PAD_SCALE * torch.randn_like(x))


def _rows(mask: Tensor, in_dim: int) -> Tensor:
    return torch.randn(mask.size(0), in_dim)


def _call_frames(module: nn.Module, x: Tensor, mask: Tensor, labels: Tensor | None) -> Tensor:
    return module(x, mask)


def _call_head(module: nn.Module, x: Tensor, mask: Tensor, labels: Tensor | None) -> Tensor:
    return module(x, labels)


def _utterance_alone(x: Tensor, mask: Tensor, i: int) -> tuple[Tensor, Tensor]:
    """Utterance ``i``'s real frames only: ``(1, length, D)`` and an all-True mask."""
    length = int(mask[i].sum())
    return x[i : i + 1, :length], torch.ones(1, length, dtype=torch.bool)


def _row_alone(x: Tensor, mask: Tensor, i: int) -> tuple[Tensor, Tensor]:
    return x[i : i + 1], mask[i : i + 1]


def _projection_loss(real: Tensor, labels: Tensor) -> Tensor:
    """A random projection of the outputs: every output gets a gradient, none is favoured."""
    return (real * torch.randn_like(real)).sum()


def _everything(out: Tensor, mask: Tensor) -> Tensor:
    return out


_UTTERANCE = "utterance {i} (length {length}) in a padded batch"
_UTTERANCE_LEAK = "padding or other utterances leak into it"

ADAPTERS: dict[Kind, KindAdapter] = {
    "encoder": KindAdapter(
        in_dim=12, build=_build_frames, inputs=padded_frames, call=_call_frames,
        output_shape=lambda module, mask, num_classes: (*mask.shape, cast(int, module.out_dim)),
        real=lambda out, mask: out[mask], alone=_utterance_alone, loss=_projection_loss,
        item=_UTTERANCE, leak_hint=_UTTERANCE_LEAK, uses_labels=False, padded=True,
    ),
    "pooling": KindAdapter(
        in_dim=16, build=_build_frames, inputs=padded_frames, call=_call_frames,
        output_shape=lambda module, mask, num_classes: (mask.size(0), cast(int, module.out_dim)),
        real=_everything, alone=_utterance_alone, loss=_projection_loss,
        item=_UTTERANCE, leak_hint=_UTTERANCE_LEAK, uses_labels=False, padded=True,
    ),
    "head": KindAdapter(
        in_dim=16, build=_build_head, inputs=_rows, call=_call_head,
        output_shape=lambda module, mask, num_classes: (mask.size(0), num_classes),
        real=_everything, alone=_row_alone, loss=lambda logits, labels: F.cross_entropy(logits, labels),
        item="row {i} of a batch", leak_hint="other rows leak into it (batch statistics in eval mode?)",
        uses_labels=True, padded=False,
    ),
}
