"""Masked building blocks for plugin authors: layers that never let padded frames reach real ones.

The plugin contract (:mod:`automel.plugin`) says padded frames (``mask == False``) must never change
the output for the real frames, in training as well as in eval; :mod:`automel.testing` checks both.
Shapes: ``B`` batch, ``T`` frames, ``C``/``D`` channels; ``mask (B, T)`` bool, True = real frame.

- :func:`masked_fill_padding` ``(x (B, T, D), mask (B, T), value=0.0) -> (B, T, D)``: padded frames
  set to ``value``. Use it before anything that reads neighbouring frames (a convolution with kernel
  > 1), so a real frame near the end sees zeros, as an utterance alone sees the convolution's own
  zero padding; and on the output, so padded output frames are zero. For channels-first
  ``(B, C, T)`` use :func:`masked_fill_channels`.
- :func:`masked_mean` ``(x (B, T, D), mask (B, T)) -> (B, D)``: the mean over real frames (pooling,
  squeeze-excitation, ...). Padded values, even inf/NaN, are ignored.
- :class:`MaskedBatchNorm1d` ``forward(x (B, C, T), mask (B, T) | None) -> (B, C, T)``: a drop-in
  ``nn.BatchNorm1d`` whose training statistics (and so its running statistics) use real frames only.
  A plain ``nn.BatchNorm1d`` over padded frames passes every eval-mode check but, in training,
  normalises real frames with statistics polluted by padding; ``check_train_masking`` catches it.
- :class:`MaskedSelfAttention` ``forward(x (B, T, D), mask (B, T)) -> (B, T, D)``: multi-head
  self-attention through ``F.scaled_dot_product_attention`` in which no query attends to a padded key.
- :class:`Dropout`: ``nn.Dropout`` with a cheaper mask in CPU training (see :func:`cpu_dropout`).

The fast path. Most training batches are crops of equal length and have no padding at all; then the
masked layers run the plain kernels (``F.batch_norm``, attention without a mask). Whether a batch is
padded is known on the host when the batch is cut (:attr:`automel.data.batching.Batch.padded`), and
the training loop says so with :func:`unpadded` around the forward; :func:`has_padding` is what the
layers ask. Without that hint a CPU mask is inspected (cheap), while an accelerator's mask is assumed
padded: looking would make the host wait for the device, and the masked path is right either way.

Masking with ``masked_fill`` rather than multiplying by the mask matters: ``0 * inf`` and ``0 * NaN``
are NaN, and the contract allows any value in padded frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Dropout", "MaskedBatchNorm1d", "MaskedSelfAttention", "always_masked", "cpu_dropout", "has_padding",
           "masked_fill_channels", "masked_fill_padding", "masked_mean", "unpadded"]

# The mask object of the batch being run when the host knows it has no padded frame (see `unpadded`).
_UNPADDED_MASK: ContextVar[Tensor | None] = ContextVar("automel_unpadded_mask", default=None)
# Set while a model is traced for export (see `always_masked`): every mask counts as padded.
_ALWAYS_MASKED: ContextVar[bool] = ContextVar("automel_always_masked", default=False)


def masked_fill_padding(x: Tensor, mask: Tensor, value: float = 0.0) -> Tensor:
    """Set padded frames of ``x (B, T, D)`` to ``value`` so that convolutions never see them.

    A batch without padding (:func:`has_padding`) comes back as it is: no copy, no kernel.
    """
    if not has_padding(mask):
        return x
    return x.masked_fill(~mask.unsqueeze(-1), value)


def masked_fill_channels(x: Tensor, mask: Tensor, value: float = 0.0) -> Tensor:
    """:func:`masked_fill_padding` for channels-first ``x (B, C, T)`` (1-D convolutions' layout)."""
    if not has_padding(mask):
        return x
    return x.masked_fill(~mask.unsqueeze(1), value)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean over real frames: ``(B, T, D), (B, T) -> (B, D)``; padded values (even inf/NaN) are ignored."""
    if not has_padding(mask):
        return x.mean(dim=1)
    count = mask.sum(dim=1, keepdim=True).clamp(min=1).to(x.dtype)
    return masked_fill_padding(x, mask).sum(dim=1) / count


@contextmanager
def unpadded(mask: Tensor, known_unpadded: bool = True) -> Iterator[None]:
    """Within the block, :func:`has_padding` answers False for this very ``mask`` object without looking.

    The caller vouches for it (it cut the batch on the host). Masks derived from it (a subsampled one,
    say) are other objects and are still checked as usual. ``known_unpadded=False`` is a no-op, so the
    caller can always wrap its forward.
    """
    if not known_unpadded:
        yield
        return
    token = _UNPADDED_MASK.set(mask)
    try:
        yield
    finally:
        _UNPADDED_MASK.reset(token)


@contextmanager
def always_masked() -> Iterator[None]:
    """Within the block, :func:`has_padding` answers True for every mask without looking.

    For tracing a model into a file (ONNX, TorchScript; :mod:`automel.exporting`): a trace records one
    path through the code, so the answer for the example batch would be frozen into the file. The masked
    path is exact for every batch, padded or not, so that is the one to record.
    """
    token = _ALWAYS_MASKED.set(True)
    try:
        yield
    finally:
        _ALWAYS_MASKED.reset(token)


def has_padding(mask: Tensor | None) -> bool:
    """Whether ``mask (B, T)`` marks any padded frame, answered without waiting for an accelerator.

    ``None``, or the mask vouched for by :func:`unpadded`: no. A CPU mask: looked at. Any other
    device: yes, since looking would synchronise with the device (the masked path is exact anyway).
    Within :func:`always_masked`: yes, for any mask.
    """
    if mask is None:
        return False
    if _ALWAYS_MASKED.get():
        return True
    if _UNPADDED_MASK.get() is mask:
        return False
    if mask.device.type == "cpu":
        return not bool(mask.all())
    return True


def cpu_dropout(x: Tensor, p: float) -> Tensor:
    """Inverted dropout of ``x`` (any shape) with a mask drawn 16 bits per element: ``x -> x.shape``.

    ``F.dropout`` on a CPU draws one Bernoulli sample per element, and that draw alone took a fifth of
    a Conformer's training step. Here one 64-bit word from the same generator (so ``torch.manual_seed``
    still decides everything) yields four 16-bit lanes, each kept when it is at or above
    ``p * 65536``: the rate is ``p`` rounded to a multiple of 1/65,536, and the kept values are scaled by
    ``1 / (1 - rate)`` so that the expectation stays ``x``. Forward and backward take about half of
    ``F.dropout``'s time (``bench/dropout.py``). Accelerators keep ``F.dropout``: it is fused there.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability {p} must be in [0, 1)")
    dropped = round(p * 65536)
    if dropped == 0:
        return x
    n = x.numel()
    words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
    # [-2**63, 2**63 - 1): all 64 bits random (random_() alone leaves the sign bit at zero).
    lanes = words.random_(-(2**63), 2**63 - 1).view(torch.int16)[:n].view(x.shape)
    keep = (lanes >= dropped - 32768).to(x.dtype).mul_(65536 / (65536 - dropped))  # 0 or 1 / (1 - rate)
    return x * keep


class Dropout(nn.Dropout):
    """``nn.Dropout`` that uses :func:`cpu_dropout` in CPU training: same arguments, same state, no parameter.

    Elsewhere (eval, an accelerator, ``inplace``, under ``torch.compile``, which fuses dropout itself)
    it is ``nn.Dropout``. Being one, it is switched off by whatever switches ``nn.Dropout*`` off.
    """

    def draws_on_cpu(self, x: Tensor) -> bool:
        """Whether this module's mask for ``x`` comes from :func:`cpu_dropout` (else from ``F.dropout``)."""
        return self.training and not self.inplace and x.device.type == "cpu" and not torch.compiler.is_compiling()

    def forward(self, x: Tensor) -> Tensor:
        if self.draws_on_cpu(x):
            return cpu_dropout(x, self.p)
        return super().forward(x)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over ``x (B, C, T)`` whose training statistics use real frames only (``mask (B, T)``).

    ``nn.BatchNorm1d`` would average over padded frames too, so a batch's padding would shift every
    real frame's normalisation (and the running statistics used at test time). Eval mode, no mask, or a
    batch without padding is the ordinary ``F.batch_norm`` (a few fused kernels); a padded batch in
    training gathers its per-channel statistics over real frames in fp32 (a frame count in fp16
    overflows at 65,504) and applies them as one scale and shift. The state dict is ``nn.BatchNorm1d``'s.
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if not self.training or not self.track_running_stats or not has_padding(mask):
            return super().forward(x)
        assert mask is not None
        return self._masked_training_forward(x, mask)

    def _masked_training_forward(self, x: Tensor, mask: Tensor) -> Tensor:
        pad = ~mask.unsqueeze(1)  # (B, 1, T)
        count = mask.sum(dtype=torch.float32).clamp(min=1)
        # masked_fill, not multiplication: padded values may be inf/NaN and 0 * NaN is NaN.
        real = x.masked_fill(pad, 0.0)
        mean = real.sum(dim=(0, 2), dtype=torch.float32) / count
        # Two passes (centre, then square) keep the variance exact when the mean is large.
        centred = (real - mean[None, :, None].to(x.dtype)).masked_fill(pad, 0.0)
        var = centred.pow(2).sum(dim=(0, 2), dtype=torch.float32) / count  # biased: what the batch uses
        self._update_running_stats(mean, var, count)
        scale = torch.rsqrt(var + self.eps)
        if self.affine:
            scale = scale * self.weight.float()
        shift = -mean * scale
        if self.affine:
            shift = shift + self.bias.float()
        # Padded frames come out as `shift`: finite whatever they held, so no NaN reaches a gradient.
        return torch.addcmul(shift[None, :, None].to(x.dtype), real, scale[None, :, None].to(x.dtype))

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: Tensor) -> None:
        assert self.num_batches_tracked is not None and self.running_mean is not None
        assert self.running_var is not None
        self.num_batches_tracked.add_(1)
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * count / (count - 1).clamp(min=1)  # running_var is unbiased, as in PyTorch
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


class MaskedSelfAttention(nn.Module):
    """Multi-head self-attention over real frames, batch-first: ``(B, T, D), (B, T) -> (B, T, D)``.

    Vaswani et al. 2017 (arXiv 1706.03762), section 3.2, run by ``F.scaled_dot_product_attention``
    with a boolean key mask ``(B, 1, 1, T)``, or no mask at all for a batch without padding (which
    lets PyTorch pick its fused kernels). Parameters carry ``nn.MultiheadAttention``'s names and
    initialisation (``in_proj_weight (3D, D)``, ``in_proj_bias (3D,)``, ``out_proj``), so the state
    dicts of models saved with it load unchanged. Attention dropout lives in ``attn_dropout`` (a
    :class:`Dropout`), so switching dropout modules off switches it off too.

    With attention dropout in CPU training, PyTorch's fused kernels do not apply and its math kernel
    draws the dropout mask element by element; the same math runs here instead, with :func:`cpu_dropout`.
    """

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % nhead:
            raise ValueError(f"d_model={d_model} is not divisible by nhead={nhead}")
        self.num_heads = nhead  # nn.MultiheadAttention's name
        self.in_proj_weight = nn.Parameter(torch.empty(3 * d_model, d_model))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * d_model))
        self.out_proj = nn.Linear(d_model, d_model)
        self.attn_dropout = Dropout(dropout)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        batch, frames, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(batch, frames, 3, self.num_heads, width // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        keys = mask[:, None, None, :] if has_padding(mask) else None  # True = may be attended to
        p = self.attn_dropout.p if self.attn_dropout.training else 0.0
        if p > 0.0 and self.attn_dropout.draws_on_cpu(x):
            out = self._attend_with_cpu_dropout(q, k, v, keys)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=p)  # (B, H, T, D / H)
        return self.out_proj(out.transpose(1, 2).reshape(batch, frames, width))

    def _attend_with_cpu_dropout(self, q: Tensor, k: Tensor, v: Tensor, keys: Tensor | None) -> Tensor:
        """``softmax(q k^T / sqrt(d)) v`` with dropout on the weights, as SDPA's math kernel: ``(B, H, T, d)``."""
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)  # (B, H, T, T)
        if keys is not None:
            scores = scores.masked_fill(~keys, float("-inf"))
        weights = cpu_dropout(scores.softmax(dim=-1), self.attn_dropout.p)
        return weights @ v

    def extra_repr(self) -> str:
        return f"d_model={self.out_proj.in_features}, num_heads={self.num_heads}"
