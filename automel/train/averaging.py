"""Weight averaging over the annealed tail of a run, and BatchNorm statistics re-estimated on given batches.

Averaging the weights of the last checkpoints of one run is free accuracy: WeSpeaker averages its last
epochs' models, and stochastic weight averaging (Izmailov et al. 2018, "Averaging Weights Leads to Wider
Optima and Better Generalization") averages along the end of the trajectory. :class:`TailAverage` keeps
an equal-weight running average (``torch.optim.swa_utils.AveragedModel``) of the weights at evenly spaced
points of the last :data:`TAIL` of the schedule's progress, so it works alike for runs scheduled by steps
and by the clock. An average of weights is not an average of BatchNorm statistics, so those are
re-estimated afterwards on training batches (:func:`reestimate_batchnorm`, as ``swa_utils.update_bn``
does; the same function re-estimates them on unlabelled target data for AdaBN, Li et al. 2016).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from automel.layers import unpadded

TAIL = 0.25  # the last quarter of the decay: the rate is below 15 % of its peak there (cosine)
MIN_STEPS = 100  # shorter runs have no tail worth averaging
BN_BATCHES = 32  # training batches for the BatchNorm statistics of the averaged weights


class TailAverage:
    """Snapshots of ``model``'s parameters at ``snapshots`` evenly spaced points of the schedule's tail.

    ``offer(progress)`` after each optimisation step takes a snapshot when ``progress`` (0..1, the
    schedule's) has passed the next point; the first snapshot is at ``1 - TAIL``, the last at the end.
    """

    def __init__(self, model: nn.Module, snapshots: int) -> None:
        self.model = model
        self.points = [1.0 - TAIL + TAIL * k / max(snapshots - 1, 1) for k in range(snapshots)]
        self.points[-1] = 1.0 - 1e-9  # the last point is the end, reached by the final step's progress
        self.averaged: AveragedModel | None = None
        self.count = 0

    def offer(self, progress: float) -> None:
        if self.count >= len(self.points) or progress < self.points[self.count]:
            return
        while self.count < len(self.points) and progress >= self.points[self.count]:
            self.count += 1  # a long step of the clock may pass several points: one snapshot for them all
        if self.averaged is None:
            self.averaged = AveragedModel(self.model, use_buffers=False)
        self.averaged.update_parameters(self.model)

    def finish(self, final_progress: float) -> nn.Module | None:
        """The averaged model (``AveragedModel.module``), or None with fewer than two snapshots.

        A run cut before its end (a deadline, at ``final_progress``) adds its last weights as one more
        snapshot when it was already in the tail.
        """
        if self.averaged is not None and final_progress < self.points[-1] and self.count < len(self.points):
            self.averaged.update_parameters(self.model)
            self.count += 1
        if self.averaged is None or int(self.averaged.n_averaged) < 2:
            return None
        return self.averaged.module

    @property
    def n_averaged(self) -> int:
        return 0 if self.averaged is None else int(self.averaged.n_averaged)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def reestimate_batchnorm(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]]) -> int:
    """Recompute every BatchNorm layer's running mean and variance from ``batches`` of ``(x (B,T,F), mask (B,T))``;
    returns how many batches were used.

    The statistics are a cumulative (equal-weight) average over the batches (``momentum=None``). Only the
    BatchNorm layers are in training mode meanwhile: dropout stays off, so the layers see the activations
    that inference will give them. Their momentum and the model's mode are restored afterwards. A model
    without BatchNorm, or no batch at all, leaves the statistics as they were (0).
    """
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return 0
    momenta = [m.momentum for m in layers]
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    was_training = model.training
    model.eval()
    for layer in layers:
        layer.train()
    used = 0
    try:
        for x, mask in batches:
            with unpadded(mask, False):
                model(x, mask)
            used += 1
    finally:
        for layer, momentum, state in zip(layers, momenta, saved, strict=True):
            layer.momentum = momentum
            if used == 0:  # nothing seen (no batch, or an error): the old statistics beat reset ones
                layer.load_state_dict(state)
        model.train(was_training)
    return used
