"""What the margin heads (AM-softmax, AAM-softmax) share: config, module and plugin bases.

Both compare an L2-normalised embedding with L2-normalised class weights, so a logit is
``s * cos(theta_c)``; they differ only in how the target class's cosine is penalised while
training. Labels switch the margin on; without labels (inference) the logits are ``s * cos``.
The margin can warm up linearly from 0 over the first ``margin_warmup`` fraction of training
(``set_progress``; the current value is the 0-d buffer ``margin``), which keeps early training
from stalling on a margin the random embeddings cannot meet yet.

A margin head is a :class:`MarginConfig` subclass (its fields), a :class:`MarginHead` subclass (its
:meth:`~MarginHead.target_logit`) and a :class:`MarginHeadPlugin` subclass (its name and search ranges).

Shapes: ``embedding (B, P)``, ``labels (B,) | None`` -> logits ``(B, C)``, always float32.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import optuna
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automel.plugin import HeadPlugin

__all__ = ["EMBED_CHOICES", "MarginConfig", "MarginHead", "MarginHeadPlugin"]

# Searched widths of the speaker-embedding projection (None: no projection).
EMBED_CHOICES: tuple[int | None, ...] = (None, 128, 192, 256)


@dataclass(frozen=True)
class MarginConfig:
    """The fields every margin head has; a subclass adds its own (trial parameter ``head.<name>.<field>``).

    ``embed_dim``: width of the ``Linear + BatchNorm`` embedding projection (None: none); ``scale``: s;
    ``margin``: m at full strength; ``margin_warmup``: fraction of training spent raising m from 0.
    """

    embed_dim: int | None = 192
    scale: float = 30.0
    margin: float = 0.2
    margin_warmup: float = 0.2

    def __post_init__(self) -> None:
        if self.embed_dim is not None and self.embed_dim < 1:
            raise ValueError(f"embed_dim={self.embed_dim} must be positive or None")
        if self.scale <= 0:
            raise ValueError(f"scale={self.scale} must be positive")
        if self.margin < 0:
            raise ValueError(f"margin={self.margin} must not be negative")
        if not 0.0 <= self.margin_warmup <= 1.0:
            raise ValueError(f"margin_warmup={self.margin_warmup} must be a fraction of training in [0, 1]")


class MarginHead(nn.Module):
    """Cosine classifier with a scheduled margin; subclasses define :meth:`target_logit`.

    ``embed_dim`` adds the usual speaker-embedding projection ``Linear(P, E) + BatchNorm1d(E)``
    (None: use the pooled vector as it is).

    The whole head runs in float32, autocast or not: under bf16 a cosine near 1 is rounded in steps
    of 2^-8, which at ``s = 30`` moves the logits in steps of about 0.12, a sizeable part of the
    margin itself. The head is a few small matrix products, so full precision costs nothing.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        *,
        embed_dim: int | None,
        scale: float,
        margin: float,
        margin_warmup: float,
    ) -> None:
        super().__init__()
        self.projection: nn.Module
        if embed_dim is None:
            self.projection = nn.Identity()
            embed_dim = in_dim
        else:
            self.projection = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.BatchNorm1d(embed_dim))
        self.weight = nn.Parameter(torch.empty(num_classes, embed_dim))
        nn.init.xavier_normal_(self.weight)
        self.scale = scale
        self.max_margin = margin
        self.margin_warmup = margin_warmup
        # The margin now (0-d), lowered by set_progress during warm-up. A tensor updated in place,
        # not a Python float: torch.compile would specialise on a float and recompile every step.
        # Not persistent: it is schedule state, and a loaded model should start at the full margin.
        self.margin: Tensor
        self.register_buffer("margin", torch.tensor(float(margin)), persistent=False)
        self.boost = 1.0  # a large-margin finish raises the full margin (automel.train.large_margin)

    def set_progress(self, progress: float) -> None:
        """Training is ``progress`` (0..1) done: the margin rises linearly to m at ``margin_warmup``."""
        if self.margin_warmup <= 0.0:
            value = self.max_margin
        else:
            value = self.max_margin * min(1.0, max(0.0, progress) / self.margin_warmup)
        self.margin.fill_(value * self.boost)

    def set_margin_boost(self, factor: float) -> None:
        """Train from now on with ``factor`` times the full margin (a large-margin finish); 1 restores it."""
        self.boost = float(factor)

    def cosine(self, embedding: Tensor) -> Tensor:
        """``cos(theta)`` between each (projected) embedding ``(B, P)`` and each class weight: ``(B, C)``, fp32."""
        with _full_precision(embedding.device):
            projected = self.projection(embedding.float())
            return F.linear(F.normalize(projected, dim=-1), F.normalize(self.weight.float(), dim=-1))

    def target_logit(self, cos: Tensor) -> Tensor:
        """The penalised cosine that replaces ``cos`` at the target class (elementwise), before scaling."""
        raise NotImplementedError

    def forward(self, embedding: Tensor, labels: Tensor | None = None) -> Tensor:
        """``embedding (B, P)``, ``labels (B,) | None`` -> float32 logits ``(B, C)``."""
        with _full_precision(embedding.device):
            cos = self.cosine(embedding)
            if labels is None:
                return self.scale * cos
            target = F.one_hot(labels, cos.size(-1)).bool()
            # Computing the margin for the whole matrix and picking the target column with `where` is
            # cheaper than gathering/scattering, and autograd only flows through the picked entries.
            return self.scale * torch.where(target, self.target_logit(cos), cos)


class MarginHeadPlugin(HeadPlugin):
    """A margin head's plugin: a subclass sets ``name``, ``config_cls``, ``head_cls`` and ``margin_range``.

    The search space is the same for every margin head, so that trial parameters keep their names
    (``head.<name>.embed_dim``, ``.scale``, ``.margin``): the projection width from
    :data:`EMBED_CHOICES`, s from ``scale_range`` and m from ``margin_range`` (both uniform). Other
    config fields keep their defaults in a search.
    """

    config_cls: ClassVar[type[MarginConfig]]
    head_cls: ClassVar[type[MarginHead]]
    scale_range: ClassVar[tuple[float, float]] = (15.0, 40.0)
    margin_range: ClassVar[tuple[float, float]]

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> MarginConfig:
        return cls.config_cls(
            embed_dim=cast("int | None", trial.suggest_categorical(cls.param("embed_dim"), EMBED_CHOICES)),
            scale=trial.suggest_float(cls.param("scale"), *cls.scale_range),
            margin=trial.suggest_float(cls.param("margin"), *cls.margin_range),
        )

    @classmethod
    def head_options(cls, config: Any) -> dict[str, Any]:
        """The keyword arguments of ``head_cls`` taken from ``config``; extend it for extra fields."""
        return {
            "embed_dim": config.embed_dim,
            "scale": config.scale,
            "margin": config.margin,
            "margin_warmup": config.margin_warmup,
        }

    @classmethod
    def build(cls, config: Any, in_dim: int, num_classes: int) -> MarginHead:
        return cls.head_cls(in_dim, num_classes, **cls.head_options(config))


def _full_precision(device: torch.device) -> AbstractContextManager[object]:
    """Autocast off on ``device``; nothing to switch off where autocast does not exist (``meta``)."""
    if not torch.amp.is_autocast_available(device.type):
        return nullcontext()
    return torch.autocast(device_type=device.type, enabled=False)
