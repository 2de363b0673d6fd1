"""Masked building blocks for plugin authors: layers that never let padded frames reach real ones.

The plugin contract (:mod:`automel.plugin`) says padded frames (``mask == False``) must never change
the output for the real frames, in training as well as in eval; :mod:`automel.testing` checks both.
Shapes: ``B`` batch, ``T`` frames, ``C``/``D`` channels; ``mask (B, T)`` bool, True = real frame.

- :func:`masked_fill_padding` ``(x (B, T, D), mask (B, T), value=0.0) -> (B, T, D)``: padded frames
  set to ``value``. Use it before anything that reads neighbouring frames (a convolution with kernel
  > 1), so a real frame near the end sees zeros, as an utterance alone sees the convolution's own
  zero padding; and on the output, so padded output frames are zero. For channels-first
  ``(B, C, T)`` use ``x.masked_fill(~mask.unsqueeze(1), 0.0)``.
- :func:`masked_mean` ``(x (B, T, D), mask (B, T)) -> (B, D)``: the mean over real frames (pooling,
  squeeze-excitation, ...). Padded values, even inf/NaN, are ignored.
- :class:`MaskedBatchNorm1d` ``forward(x (B, C, T), mask (B, T) | None) -> (B, C, T)``: a drop-in
  ``nn.BatchNorm1d`` whose training statistics (and so its running statistics) use real frames only.
  A plain ``nn.BatchNorm1d`` over padded frames passes every eval-mode check but, in training,
  normalises real frames with statistics polluted by padding; ``check_train_masking`` catches it.
- Attention: pass ``key_padding_mask=~mask`` so no query attends to a padded key.

Masking with ``masked_fill`` rather than multiplying by the mask matters: ``0 * inf`` and ``0 * NaN``
are NaN, and the contract allows any value in padded frames.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from automel.plugin import masked_fill_padding
from automel.pooling.mean import masked_mean

__all__ = ["MaskedBatchNorm1d", "masked_fill_padding", "masked_mean"]


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over ``x (B, C, T)`` whose training statistics use real frames only (``mask (B, T)``).

    ``nn.BatchNorm1d`` would average over padded frames too, so a batch's padding would shift every
    real frame's normalisation (and the running statistics used at test time). Eval mode, or no mask,
    is the ordinary ``nn.BatchNorm1d`` path; the state dict is ``nn.BatchNorm1d``'s.
    """

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None or not self.training or not self.track_running_stats:
            return super().forward(x)
        keep = mask.unsqueeze(1)  # (B, 1, T)
        count = keep.sum().clamp(min=1).to(x.dtype)
        # masked_fill, not multiplication: padded values may be inf/NaN and 0 * NaN is NaN.
        mean = x.masked_fill(~keep, 0.0).sum(dim=(0, 2)) / count
        centred = (x - mean[None, :, None]).masked_fill(~keep, 0.0)
        var = centred.pow(2).sum(dim=(0, 2)) / count  # biased: what the batch is normalised with
        with torch.no_grad():
            assert self.num_batches_tracked is not None and self.running_mean is not None
            assert self.running_var is not None
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            unbiased = var * count / (count - 1).clamp(min=1)  # running_var is unbiased, as in PyTorch
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(unbiased.detach(), momentum)
        y = (x - mean[None, :, None]) * torch.rsqrt(var[None, :, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y
