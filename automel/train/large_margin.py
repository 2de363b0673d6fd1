"""A large-margin finish: the last part of a run trains on longer crops with a larger margin.

The IDLab VoxSRC-20 system (Thienpondt, Desplanques & Demuynck 2021, "The IDLab VoxSRC-20 Submission:
Large Margin Fine-Tuning and Quality-Aware Score Calibration in DNN Based Speaker Verification") and
WeSpeaker's large-margin fine-tuning end training with a few epochs on longer segments and a larger
margin, at a small learning rate: longer crops see more of each speaker, and the larger margin pulls each
class tighter once the embedding has settled. Here it is the last :attr:`LargeMarginFinish.fraction` of
the schedule's progress (by steps or by the clock), so it lands in the annealed tail of any run: the crops
grow :data:`SEGMENT_SCALE` times, and a margin head's margin :data:`MARGIN_SCALE` times (heads without
a margin ignore it). Only the training batches change; validation always sees whole utterances.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

SEGMENT_SCALE = 2.0  # crops twice as long (IDLab: 2 s to 6 s; a CPU pays for every frame)
MARGIN_SCALE = 1.5  # e.g. AM-softmax 0.2 -> 0.3 (IDLab: 0.2 -> 0.5, on far more data)
MAX_SEGMENT = 400  # frames: longer crops are mostly padding on short utterances


@dataclass
class LargeMarginFinish:
    """Switches a run to its finish once the schedule's progress reaches ``1 - fraction`` (0: never)."""

    fraction: float
    segment_len: int
    started: bool = False

    @property
    def segment(self) -> int:
        """The crop length of the finish."""
        return max(self.segment_len, min(MAX_SEGMENT, int(self.segment_len * SEGMENT_SCALE)))

    def due(self, progress: float) -> bool:
        """True once, at the first step whose ``progress`` is in the finish."""
        if self.started or self.fraction <= 0 or progress < 1.0 - self.fraction:
            return False
        self.started = True
        return True


def boost_margin(model: nn.Module, factor: float) -> int:
    """Raise every margin head's full margin ``factor`` times; returns how many heads have one."""
    heads = [m for m in model.modules() if callable(getattr(m, "set_margin_boost", None))]
    for head in heads:
        head.set_margin_boost(factor)  # type: ignore[operator]
    return len(heads)
