"""The large-margin finish: longer crops and a larger margin over the last part of a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from automel.errors import ConfigError
from automel.train.config import RunSettings
from automel.train.fit import open_workspace, train_run
from automel.train.large_margin import MARGIN_SCALE, LargeMarginFinish

PARAMS = {"encoder": "tdnn", "encoder.tdnn.channels": 32, "encoder.tdnn.out_channels": 64, "pooling": "mean",
          "head": "am-softmax", "head.am-softmax.margin": 0.2, "train.batch_size": 8, "train.segment_len": 64,
          "train.warmup": 0.0}


def test_the_finish_starts_once_at_its_share_of_the_progress() -> None:
    finish = LargeMarginFinish(0.25, segment_len=128)
    assert finish.segment == 256
    assert [finish.due(p) for p in (0.5, 0.74, 0.75, 0.9, 1.0)] == [False, False, True, False, False]
    assert not LargeMarginFinish(0.0, 128).due(1.0)
    assert LargeMarginFinish(0.1, 300).segment == 400  # capped: longer crops would be mostly padding


def test_a_run_ends_with_longer_crops_and_a_larger_margin(hw4_sample: Path, isolated_home: Path) -> None:
    margins: list[float] = []
    widths: list[int] = []

    def watch(model: torch.nn.Module) -> None:
        model.register_forward_pre_hook(lambda _, args: widths.append(args[0].shape[1]))
        model.head.register_forward_pre_hook(lambda head, _: margins.append(float(head.margin)))

    work = open_workspace(hw4_sample, isolated_home)
    settings = RunSettings(steps=40, valid_every=40, validate=False, large_margin=0.25, average=0)
    model, result, record = train_run(PARAMS, work, settings, torch.device("cpu"), on_built=watch)
    # step 31 is at progress 0.75: its margin is raised, and the crops are longer from the next batch on
    assert result.large_margin == {"from_step": 32, "segment_len": 128, "margin_heads": 1}
    assert record.result["large_margin"]["from_step"] == 32
    assert widths[:31] == [64] * 31 and widths[31:] == [128] * 9
    assert margins[29] == pytest.approx(0.2) and margins[30:] == pytest.approx([0.2 * MARGIN_SCALE] * 10)
    assert model.head.boost == 1.0  # the exported model keeps its own margin


def test_a_bad_fraction_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"large_margin = 1\.0 must be a fraction"):
        RunSettings(large_margin=1.0)
