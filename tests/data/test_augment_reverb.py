"""Reverberation in the log-mel domain (automel.data.augment.reverb): RT60, DRR, causality, recorded kernels."""

from __future__ import annotations

import math

import pytest
import torch

from automel.data.augment import REVERB_LEVELS, Augmenter, ReverbLevel, add_reverb, exponential_kernels, reverberate
from automel.data.augment.reverb import tail_frames
from tests.data.test_augment import batch

HOP = 0.01
QUIET, LOUD, ONSET = -30.0, 10.0, 20


def impulse(frames: int = 160, bins: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """One loud frame at ONSET over a very quiet floor; the last 10 frames are padding."""
    x = torch.full((1, frames, bins), QUIET)
    x[0, ONSET] = LOUD
    mask = torch.ones((1, frames), dtype=torch.bool)
    mask[0, -10:] = False
    return x, mask


def measured_rt60(y: torch.Tensor, band: int, lags: range) -> float:
    """RT60 from a least-squares line through the tail's log power after the impulse (60 dB = ln 10^6)."""
    t = torch.tensor(list(lags), dtype=torch.float64)
    level = y[0, ONSET + t.long(), band].double()
    slope = ((t - t.mean()) * (level - level.mean())).sum() / ((t - t.mean()) ** 2).sum()
    return float(math.log(1e6) * HOP / -slope)


@pytest.mark.parametrize("rt60", [0.2, 0.5, 0.8])
def test_tail_decays_at_the_drawn_rt60(rt60: float) -> None:
    x, mask = impulse()
    level = ReverbLevel(prob=1.0, rt60_s=(rt60, rt60), drr_db=(0.0, 0.0), hf_damping=0.0)
    y = add_reverb(x, mask, level, torch.Generator().manual_seed(0), HOP)
    lags = range(2, int(rt60 / HOP * 0.75))  # the first 45 dB of the decay, well above the floor
    for band in (0, 20, 39):
        assert measured_rt60(y, band, lags) == pytest.approx(rt60, rel=0.03)


def test_high_bands_decay_faster_with_damping() -> None:
    x, mask = impulse()
    level = ReverbLevel(prob=1.0, rt60_s=(0.6, 0.6), drr_db=(0.0, 0.0), hf_damping=0.3)
    y = add_reverb(x, mask, level, torch.Generator().manual_seed(0), HOP)
    lags = range(2, 40)
    assert measured_rt60(y, 0, lags) == pytest.approx(0.6, rel=0.03)
    assert measured_rt60(y, 39, lags) == pytest.approx(0.6 * 0.7, rel=0.03)


@pytest.mark.parametrize("drr", [-3.0, 0.0, 10.0])
def test_tail_energy_matches_the_direct_to_reverberant_ratio(drr: float) -> None:
    x, mask = impulse()
    kernels = exponential_kernels(torch.tensor([0.5]), torch.tensor([drr]), 40, HOP, tail_frames(0.5, HOP))
    y = reverberate(x, mask, kernels, torch.ones(1, dtype=torch.bool))
    real = int(mask.sum())
    tail = (y[0, ONSET + 1 : real].double().exp() - math.exp(QUIET) * (1 + 10 ** (-drr / 10))).sum(0)
    ratio_db = 10 * torch.log10(math.exp(LOUD) / tail)
    assert ratio_db == pytest.approx(torch.full((40,), drr, dtype=torch.float64), abs=0.1)
    assert y[0, ONSET] == pytest.approx(torch.full((40,), LOUD), abs=1e-4)  # the direct path is kept


def test_reverb_is_causal_only_adds_power_and_keeps_padding() -> None:
    x, mask = impulse()
    level = ReverbLevel(prob=1.0, rt60_s=(0.8, 0.8), drr_db=(-3.0, -3.0))
    y = add_reverb(x, mask, level, torch.Generator().manual_seed(0), HOP)
    floor_with_its_tail = QUIET + math.log(1 + 10 ** 0.3)  # the floor plus its own tail, 3 dB above direct
    assert (y[0, :ONSET] <= floor_with_its_tail + 1e-4).all()  # nothing of the impulse before it
    assert (y[mask] >= x[mask] - 1e-5).all()
    assert torch.equal(y[~mask], x[~mask])


def test_probability_and_rows_are_independent() -> None:
    x, mask = batch(b=8)
    level = ReverbLevel(prob=0.5, rt60_s=(0.4, 0.4), drr_db=(0.0, 0.0))
    y = add_reverb(x, mask, level, torch.Generator().manual_seed(2), HOP)
    changed = (y != x).flatten(1).any(1)
    assert 0 < int(changed.sum()) < 8
    assert torch.equal(y[~changed], x[~changed])
    # a reverberated row is smeared in time: neighbouring frames become more alike
    smooth = lambda z: (z[:, 1:] - z[:, :-1]).abs().mean((1, 2))  # noqa: E731
    assert (smooth(y)[changed] < smooth(x)[changed]).all()


def test_recorded_kernels_are_used_when_given() -> None:
    """A bank of one kernel with a single echo at lag 5 (0 dB): the reverberated impulse repeats 5 frames later."""
    x, mask = impulse()
    echo = torch.zeros((1, 8, 40))
    echo[0, 0], echo[0, 5] = 1.0, 1.0
    level = ReverbLevel(prob=1.0, rt60_s=(0.3, 0.3), drr_db=(0.0, 0.0), recorded_prob=1.0)
    y = add_reverb(x, mask, level, torch.Generator().manual_seed(0), HOP, bank=echo)
    assert y[0, ONSET + 5] == pytest.approx(torch.full((40,), LOUD), abs=1e-3)
    assert (y[0, ONSET + 1 : ONSET + 5] <= QUIET + math.log(2) + 1e-4).all()  # only the floor and its echo


def test_levels_table() -> None:
    light, strong = REVERB_LEVELS["light"], REVERB_LEVELS["strong"]
    assert REVERB_LEVELS["off"] is None and light is not None and strong is not None
    assert strong.rt60_s[1] == 0.8 and light.rt60_s[0] == 0.2 and strong.prob > light.prob
    assert strong.drr_db[0] < light.drr_db[0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_augmenter_reverb_keeps_padding_bitwise_and_is_seeded(dtype: torch.dtype) -> None:
    x, mask = batch()
    x = x.to(dtype)
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    first, again = Augmenter(seed=1, reverb="strong")(x, mask), Augmenter(seed=1, reverb="strong")(x, mask)
    assert torch.equal(first[~mask].view(bits), x[~mask].view(bits))
    assert torch.equal(first, again) and not torch.equal(first, Augmenter(seed=2, reverb="strong")(x, mask))


def test_reverb_needs_no_host_sync() -> None:
    x, mask = batch()
    echo = torch.zeros((2, 8, 40))
    echo[:, 0] = 1.0
    y = Augmenter(seed=0, reverb="strong", rir_bank=echo)(x.to("meta"), mask.to("meta"))
    assert y.device.type == "meta" and y.shape == x.shape
