"""The robust objective's shifted validation copies (automel/train/shift.py) and their place in validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from automel.train.shift import SNR_DB, shifted


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((4, 300, 40), generator=g) + 3.0
    mask = torch.ones((4, 300), dtype=torch.bool)
    mask[2, 180:] = False
    return x, mask


def test_the_copies_are_the_same_at_every_call_and_differ_between_batches() -> None:
    x, mask = _batch()
    first, again, other = shifted(x, mask, 0), shifted(x, mask, 0), shifted(x, mask, 1)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert torch.isfinite(first).all()


def test_padding_frames_are_left_alone_and_real_frames_change() -> None:
    x, mask = _batch()
    out = shifted(x, mask, 3)
    assert torch.equal(out[2, 180:], x[2, 180:])
    change = (out - x)[mask].abs()
    assert float(change.mean()) > 0.3  # a shift of a few dB on average (0.3 nat is 1.3 dB)


def test_the_noise_added_is_within_the_snr_band() -> None:
    """Without the channel parts, the added power is 5-20 dB below the speech's (power over real cells)."""
    x, mask = _batch(1)
    out = shifted(x, mask, 0)
    for row in range(4):
        real = mask[row]
        # The channel (resonances, gain swing) changes the level too; the SNR is against the shifted speech,
        # so the noise share is at most that of the lowest SNR of the band.
        added = float(torch.logsumexp(out[row][real].flatten(), 0) - torch.logsumexp(x[row][real].flatten(), 0))
        assert added < 10 * math.log(10) / 10 + 1.0  # well under +10 dB in total: noise at >= 5 dB SNR
    assert SNR_DB[0] >= 5.0


def test_robust_validation_scores_both_and_their_mean() -> None:
    """``_validate(objective="robust")`` gives the clean and shifted accuracies and ranks by their mean."""
    from automel.train.loop import _validate

    store, split, model = _tiny_setup()
    clean = _validate(model, store, split, torch.device("cpu"), None, "clean")
    robust = _validate(model, store, split, torch.device("cpu"), None, "robust")
    assert set(clean) == {"valid_acc", "valid_loss"}
    assert robust["valid_acc_clean"] == pytest.approx(clean["valid_acc"])
    assert robust["valid_acc"] == pytest.approx((robust["valid_acc_clean"] + robust["valid_acc_shifted"]) / 2)
    assert np.isfinite(robust["valid_loss"])


def _tiny_setup() -> tuple[object, object, torch.nn.Module]:
    import tempfile
    from pathlib import Path

    from automel.model import build_model
    from automel.train.fit import open_workspace
    from tests.conftest import HW4_SAMPLE, need

    work = open_workspace(need(HW4_SAMPLE), Path(tempfile.mkdtemp()))
    model = build_model({"encoder": "tdnn", "pooling": "attentive-stats", "head": "softmax"}, work.store.n_mels,
                        work.store.num_classes)
    return work.store, work.split, model.eval()


def test_an_unknown_objective_is_refused_by_the_settings() -> None:
    from automel.errors import ConfigError
    from automel.train.config import RunSettings

    with pytest.raises(ConfigError, match="objective = 'noisy' must be one of: clean, robust"):
        RunSettings(objective="noisy")
