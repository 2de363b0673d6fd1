"""Real-sounding noise on raw log-mel (automel.data.augment.noise): babble, generated noise, a recorded bank."""

from __future__ import annotations

import math

import pytest
import torch

from automel.data.augment import (
    NOISE_LEVELS,
    Augmenter,
    FrontEnd,
    MelAxis,
    NoiseLevel,
    add_noise,
    babble,
    bank_noise,
    burst_envelope,
    generated_noise,
    hum_spectrum,
    mix_at_snr,
    modulation_envelope,
)
from tests.data.test_augment import batch


def axis(frontend: FrontEnd | None = None) -> MelAxis:
    frontend = frontend or FrontEnd()
    centres = torch.as_tensor(frontend.centres_mel(), dtype=torch.float32)
    return MelAxis(centres, frontend.spacing_mel(), frontend.hop_s, frontend.nyquist)


def achieved_snr_db(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` signal power over added power, both over each utterance's real cells, in dB (float64)."""
    real = mask.unsqueeze(-1).double()
    signal = (x.double().exp() * real).sum((1, 2))
    added = ((y.double().exp() - x.double().exp()) * real).sum((1, 2))
    return 10 * torch.log10(signal / added)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def recorded_bank(frames: int = 500, bins: int = 40) -> torch.Tensor:
    """A stand-in for a converted bank: log-mel of loud, low-pass noise."""
    return torch.randn((frames, bins), generator=gen(9)) + torch.linspace(12, 2, bins)


@pytest.mark.parametrize("snr", [0.0, 7.5, 20.0])
@pytest.mark.parametrize("source", ["babble", "generated", "bank"])
def test_each_source_is_mixed_at_the_drawn_snr(source: str, snr: float) -> None:
    x, mask = batch()
    noise = {"babble": lambda: babble(x, mask, 3, gen()), "generated": lambda: generated_noise(mask, axis(), gen()),
             "bank": lambda: bank_noise(recorded_bank(), len(x), x.shape[1], gen())}[source]()
    y = mix_at_snr(x, mask, noise, torch.full((len(x),), snr), torch.ones(len(x), dtype=torch.bool))
    assert achieved_snr_db(x, y, mask) == pytest.approx(torch.full((len(x),), snr, dtype=torch.float64), abs=1.0)
    assert torch.equal(y[~mask], x[~mask])


@pytest.mark.parametrize("with_bank", [False, True])
def test_add_noise_hits_each_utterances_snr_within_one_db(with_bank: bool) -> None:
    x, mask = batch()
    level = NoiseLevel(prob=1.0, snr_db=(0.0, 0.0))
    y = add_noise(x, mask, level, gen(3), axis(), recorded_bank() if with_bank else None)
    assert (achieved_snr_db(x, y, mask) - 0.0).abs().max() <= 1.0
    assert torch.equal(y[~mask], x[~mask])
    assert (y[mask] >= x[mask]).all()  # noise only ever adds power


def test_strong_reaches_zero_db_and_light_stays_milder() -> None:
    light, strong = NOISE_LEVELS["light"], NOISE_LEVELS["strong"]
    assert NOISE_LEVELS["off"] is None and light is not None and strong is not None
    assert strong.snr_db[0] == 0.0 < light.snr_db[0] and strong.prob > light.prob
    x, mask = batch(b=8)
    y = add_noise(x, mask, NoiseLevel(prob=1.0, snr_db=strong.snr_db), gen(), axis())
    snr = achieved_snr_db(x, y, mask)
    assert (snr >= -1.0).all() and (snr <= 21.0).all() and snr.std() > 2.0  # drawn per utterance


def test_probability_leaves_some_utterances_clean() -> None:
    x, mask = batch(b=8)
    y = add_noise(x, mask, NoiseLevel(prob=0.5, snr_db=(5.0, 5.0)), gen(1), axis())
    changed = (y != x).flatten(1).any(1)
    assert 0 < int(changed.sum()) < 8
    assert torch.equal(y[~changed], x[~changed])


def test_babble_is_other_utterances_shifted_in_time() -> None:
    """Every row's babble is made of other rows: with one talker it is another row, rolled, at unit power."""
    b, t, f = 4, 32, 8
    x = torch.arange(b, dtype=torch.float32).view(b, 1, 1) * 10 + torch.randn((b, t, f), generator=gen())
    mask = torch.ones((b, t), dtype=torch.bool)
    mask[2, 20:] = False
    noise = babble(x, mask, 1, gen(5))
    unit = x - torch.logsumexp(x.masked_fill(~mask.unsqueeze(-1), -math.inf).flatten(1), 1).view(b, 1, 1) + \
        torch.log(mask.sum(1) * f).view(b, 1, 1)
    for row in range(b):
        matches = [other for other in range(b) if other != row and any(
            torch.allclose(noise[row], unit[other, :int(mask[other].sum())].roll(-s, 0).repeat(t, 1)[:t], atol=1e-5)
            for s in range(int(mask[other].sum())))]
        assert len(matches) == 1  # exactly one other utterance, circularly shifted within its real frames


def test_babble_of_several_talkers_sums_powers() -> None:
    x, mask = batch()
    one, three = babble(x, mask, 1, gen(2)), babble(x, mask, 3, gen(2))
    assert torch.isfinite(three[mask]).all()
    assert (three.exp().mean((1, 2)) >= one.exp().mean((1, 2)) * 0.99).float().mean() > 0.5


def test_bursts_stand_thirty_db_above_their_gaps_inside_real_frames() -> None:
    _, mask = batch(b=8)
    gate = burst_envelope(mask, 0.01, gen())
    gap = -30 * math.log(10) / 10
    assert ((gate == 0) | ((gate - gap).abs() < 1e-6)).all()
    on = gate == 0
    assert on.any(1).all()  # at least one burst each
    assert not (on & ~mask).any()  # never in padding
    assert (on.sum(1) <= 4 * 30 + 1).all()  # at most 4 bursts of 300 ms (+ the onset frame)


def test_modulation_is_slow_and_within_its_depth() -> None:
    envelope = modulation_envelope(16, 400, 0.01, torch.device("cpu"), gen())
    peak_to_peak = (envelope.amax(1) - envelope.amin(1)) / (math.log(10) / 10)
    assert ((peak_to_peak > 5.9) & (peak_to_peak < 20.1)).all()
    crossings = ((envelope[:, 1:] > 0) != (envelope[:, :-1] > 0)).sum(1)  # 4 s: 0.5-4 Hz gives 4-32 crossings
    assert ((crossings >= 3) & (crossings <= 33)).all()


def test_hum_sits_on_the_bins_of_its_tones() -> None:
    """Mains hum's harmonics (50/60 Hz, up to 600 Hz) fill the lowest mel bins; above them only the whine tone's
    one or two bins rise over the floor: tonal, not broadband."""
    spectrum = hum_spectrum(32, axis(), gen())  # (B, F) log power, the fundamental at power 1
    power = spectrum.exp()
    assert (power[:, :9].sum(1) > 1.5).all()  # bins centred below ~550 Hz: the harmonic series
    assert ((power[:, 10:] > 1e-3).sum(1) <= 2).all()  # bins centred above 700 Hz: the whine at most


def test_generated_kinds_are_all_drawn_and_finite() -> None:
    _, mask = batch(b=8)
    noise = generated_noise(mask.repeat(8, 1), axis(), gen())
    assert torch.isfinite(noise).all()
    frame_spread = noise.mean(2).std(1)  # bursts and modulation swing over time; hum does not
    assert frame_spread.min() < 0.5 and frame_spread.max() > 2.0


def test_bank_crops_wrap_around_the_bank() -> None:
    bank = torch.arange(10, dtype=torch.float32).view(10, 1).expand(10, 3)
    crops = bank_noise(bank, 5, 25, gen())
    starts = crops[:, 0, 0]
    expected = (starts.view(5, 1) + torch.arange(25)) % 10
    assert torch.equal(crops[..., 0], expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_augmenter_noise_keeps_padding_bitwise_and_is_seeded(dtype: torch.dtype) -> None:
    x, mask = batch()
    x = x.to(dtype)
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    make = lambda seed: Augmenter(seed=seed, noise="strong", noise_bank=recorded_bank())  # noqa: E731
    first, again, other = make(1)(x, mask), make(1)(x, mask), make(2)(x, mask)
    assert torch.equal(first[~mask].view(bits), x[~mask].view(bits))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_noise_needs_no_host_sync() -> None:
    """On the meta device any data-dependent step (``.item()``, ``nonzero``, boolean indexing) fails."""
    x, mask = batch()
    augmenter = Augmenter(seed=0, noise="strong", noise_bank=recorded_bank())
    y = augmenter(x.to("meta"), mask.to("meta"))
    assert y.device.type == "meta" and y.shape == x.shape
