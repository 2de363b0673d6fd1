"""What the margin heads (AM-softmax, AAM-softmax) share.

Both compare an L2-normalised embedding with L2-normalised class weights, so a logit is
``s * cos(theta_c)``; they differ only in how the target class's cosine is penalised while
training. Labels switch the margin on; without labels (inference) the logits are ``s * cos``.
The margin can warm up linearly from 0 over the first ``margin_warmup`` fraction of training
(``set_progress``; the current value is the 0-d buffer ``margin``), which keeps early training
from stalling on a margin the random embeddings cannot meet yet.

Shapes: ``embedding (B, P)``, ``labels (B,) | None`` -> logits ``(B, C)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MarginHead", "check_margin_config"]


def check_margin_config(embed_dim: int | None, scale: float, margin: float, margin_warmup: float) -> None:
    """Raise ValueError for a value no margin head can use."""
    if embed_dim is not None and embed_dim < 1:
        raise ValueError(f"embed_dim={embed_dim} must be positive or None")
    if scale <= 0:
        raise ValueError(f"scale={scale} must be positive")
    if margin < 0:
        raise ValueError(f"margin={margin} must not be negative")
    if not 0.0 <= margin_warmup <= 1.0:
        raise ValueError(f"margin_warmup={margin_warmup} must be a fraction of training in [0, 1]")


class MarginHead(nn.Module):
    """Cosine classifier with a scheduled margin; subclasses define :meth:`target_logit`.

    ``embed_dim`` adds the usual speaker-embedding projection ``Linear(P, E) + BatchNorm1d(E)``
    (None: use the pooled vector as it is).
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

    def set_progress(self, progress: float) -> None:
        """Training is ``progress`` (0..1) done: the margin rises linearly to m at ``margin_warmup``."""
        if self.margin_warmup <= 0.0:
            value = self.max_margin
        else:
            value = self.max_margin * min(1.0, max(0.0, progress) / self.margin_warmup)
        self.margin.fill_(value)

    def cosine(self, embedding: Tensor) -> Tensor:
        """``cos(theta)`` between each (projected) embedding and each class weight: ``(B, C)``."""
        return F.linear(F.normalize(self.projection(embedding), dim=-1), F.normalize(self.weight, dim=-1))

    def target_logit(self, cos: Tensor) -> Tensor:
        """The penalised cosine that replaces ``cos`` at the target class (elementwise), before scaling."""
        raise NotImplementedError

    def forward(self, embedding: Tensor, labels: Tensor | None = None) -> Tensor:
        cos = self.cosine(embedding)
        if labels is None:
            return self.scale * cos
        target = F.one_hot(labels, cos.size(-1)).bool()
        # Computing the margin for the whole matrix and picking the target column with `where` is
        # cheaper than gathering/scattering, and autograd only flows through the picked entries.
        return self.scale * torch.where(target, self.target_logit(cos), cos)
