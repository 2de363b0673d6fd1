"""The fast path's layers against the ones they replaced, interleaved step by step in one process.

    AUTOMEL_BENCH_THREADS=1 .venv/bin/python bench/fastpath_ab.py [--configs a,b] [--steps 12]

``bench/fastpath.py`` runs whole revisions in separate processes: the end-to-end truth, but only on a
quiet machine. This one stays fair on a busy one: each configuration's model is built once, a copy gets
the layers of revision 524148b back (``OldMaskedBatchNorm1d``, ``nn.MultiheadAttention`` with a float
key mask, ``nn.TransformerEncoder``, ``nn.Dropout``; their code is copied below verbatim), and the two train in
alternation on the same batches (forward, backward, clipping, AdamW: the default loop over parameters
for the old, fused for the new, as the training loops build them), so that load from other
processes hits both alike. The median of the per-step time ratios is reported.

Same data, crops and configurations as ``bench/fastpath.py`` (seg128: nearly no padded batch; seg384:
nearly all padded). The new layers run exactly as the training loop runs them, with the host's
"this batch is unpadded" hint (:func:`automel.layers.unpadded`).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from _common import BENCH_HOME, machine, report
from fastpath import COMMON, CONFIGS, SEGMENTS
from torch import Tensor, nn

from automel.data.batching import RandomCrops
from automel.data.synth import default_corpus
from automel.encoders.conformer import SelfAttention
from automel.encoders.transformer import TransformerEncoder
from automel.layers import Dropout, MaskedBatchNorm1d, unpadded
from automel.model import build_model
from automel.train.fit import full_params, open_workspace


class OldMaskedBatchNorm1d(nn.BatchNorm1d):
    """``automel.layers.MaskedBatchNorm1d`` at 524148b: masked statistics on every training batch."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        if mask is None or not self.training or not self.track_running_stats:
            return super().forward(x)
        keep = mask.unsqueeze(1)
        count = keep.sum().clamp(min=1).to(x.dtype)
        mean = x.masked_fill(~keep, 0.0).sum(dim=(0, 2)) / count
        centred = (x - mean[None, :, None]).masked_fill(~keep, 0.0)
        var = centred.pow(2).sum(dim=(0, 2)) / count
        with torch.no_grad():
            assert self.num_batches_tracked is not None and self.running_mean is not None
            assert self.running_var is not None
            self.num_batches_tracked.add_(1)
            momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            unbiased = var * count / (count - 1).clamp(min=1)
            self.running_mean.lerp_(mean.detach(), momentum)
            self.running_var.lerp_(unbiased.detach(), momentum)
        y = (x - mean[None, :, None]) * torch.rsqrt(var[None, :, None] + self.eps)
        if self.affine:
            y = y * self.weight[None, :, None] + self.bias[None, :, None]
        return y


class OldSelfAttention(nn.Module):
    """The Conformer's attention at 524148b: ``nn.MultiheadAttention`` with ``key_padding_mask``."""

    def __init__(self, new: SelfAttention) -> None:
        super().__init__()
        d_model, nhead = new.attention.out_proj.in_features, new.attention.num_heads
        self.norm, self.dropout = new.norm, new.dropout
        self.attention = nn.MultiheadAttention(d_model, nhead, dropout=new.attention.attn_dropout.p, batch_first=True)
        self.attention.load_state_dict(new.attention.state_dict())

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = self.norm(x)
        h, _ = self.attention(h, h, h, key_padding_mask=~mask, need_weights=False)
        return self.dropout(h)


class OldTransformerLayers(nn.Module):
    """The Transformer's stack at 524148b: ``nn.TransformerEncoder`` of ``nn.TransformerEncoderLayer``."""

    def __init__(self, params: dict[str, Any]) -> None:
        super().__init__()
        prefix = "encoder.transformer."
        p = {k.removeprefix(prefix): v for k, v in params.items() if k.startswith(prefix)}
        layer = nn.TransformerEncoderLayer(p["d_model"], p["nhead"], p["dim_feedforward"], p["dropout"],
                                           batch_first=True, norm_first=p["norm_first"])
        self.layers = nn.TransformerEncoder(layer, p["num_layers"], enable_nested_tensor=False,
                                            norm=nn.LayerNorm(p["d_model"]) if p["norm_first"] else None)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.layers(x, src_key_padding_mask=~mask)


def old_version(model: nn.Module, params: dict[str, Any]) -> nn.Module:
    """A deep copy of ``model`` with the replaced layers put back (same weights where they carry over)."""
    old = copy.deepcopy(model)
    for module in list(old.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, MaskedBatchNorm1d):
                swapped = OldMaskedBatchNorm1d(child.num_features)
                swapped.load_state_dict(child.state_dict())
                setattr(module, child_name, swapped)
            elif isinstance(child, SelfAttention):
                setattr(module, child_name, OldSelfAttention(child))
    if isinstance(old.encoder, TransformerEncoder):
        old.encoder.layers = OldTransformerLayers(params)
    for module in list(old.modules()):  # after the swaps above, which reuse some dropout modules
        for child_name, child in list(module.named_children()):
            if isinstance(child, Dropout):
                setattr(module, child_name, nn.Dropout(child.p))
    return old


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Any, hint: bool) -> float:
    started = time.perf_counter()
    with unpadded(batch.mask, hint and not batch.padded):
        loss = F.cross_entropy(model(batch.x, batch.mask, batch.labels), batch.labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    return time.perf_counter() - started


def compare(config: str, segment: int, steps: int) -> dict[str, float]:
    work = open_workspace(default_corpus(BENCH_HOME), BENCH_HOME)
    params = full_params({**CONFIGS[config], **COMMON})
    torch.manual_seed(0)
    new = build_model(params, work.store.n_mels, work.store.num_classes).train()
    old = old_version(new, params).train()
    # As the two loops build them: the old one AdamW's default loop over parameters, the new one fused.
    optimizers = {new: torch.optim.AdamW(new.parameters(), fused=True), old: torch.optim.AdamW(old.parameters())}
    crops = RandomCrops(work.store, work.split.train, 32, segment, seed=0)
    times: dict[str, list[float]] = {"old": [], "new": []}
    padded = 0
    for step in range(steps + 2):
        batch = next(crops)
        padded += batch.padded
        order = [("new", new), ("old", old)] if step % 2 else [("old", old), ("new", new)]
        for name, model in order:
            seconds = train_step(model, optimizers[model], batch, hint=name == "new")
            if step >= 2:  # the first two steps warm up
                times[name].append(seconds)
    ratios = [o / n for o, n in zip(times["old"], times["new"], strict=True)]
    return {"old_s_per_step": round(statistics.median(times["old"]), 4),
            "new_s_per_step": round(statistics.median(times["new"]), 4),
            "speedup": round(statistics.median(ratios), 3), "padded_batches": padded, "steps": steps}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--segments", default=",".join(SEGMENTS))
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    for config in args.configs.split(","):
        for segment_name in args.segments.split(","):
            report("fastpath_ab", machine=machine(), config=config, crops=segment_name,
                   **compare(config, SEGMENTS[segment_name], args.steps))


if __name__ == "__main__":
    main()
