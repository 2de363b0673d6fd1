"""Training-batch augmentation on raw log-mel (automel.data.augment): SpecAugment, channel perturbation, and every
family together. Noise, reverberation, band limits and banks have their own test_augment_*.py files."""

from __future__ import annotations

import json
import math
from pathlib import Path
from unittest import mock

import pytest
import torch
from typer.testing import CliRunner

from automel.data import augment as augment_module
from automel.data.augment import (
    CHANNEL_LEVELS,
    LEVELS,
    SPEC_LEVELS,
    Augmenter,
    ChannelLevel,
    SpecAugmentLevel,
    channel_perturb,
    db_to_nat,
    spec_augment,
)
from automel.data.batching import PAD_VALUE
from automel.errors import ConfigError
from automel.train.config import TrainParams
from tests.conftest import run


def batch(b: int = 8, t: int = 128, f: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw-log-mel-like features (about -8..+6) with a few padded utterances (PAD_VALUE, mask False)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((b, t, f), generator=g) * 2.0 - 1.0 + torch.linspace(3, -3, f)
    mask = torch.ones((b, t), dtype=torch.bool)
    for row, length in enumerate((t, 90, 40, t, 100, t, 17, t)[:b]):
        mask[row, length:] = False
    return x.masked_fill(~mask.unsqueeze(-1), PAD_VALUE), mask


ALL = [(s, c) for s in LEVELS for c in LEVELS]


@pytest.mark.parametrize(("spec", "channel"), ALL)
def test_shape_dtype_and_padding_untouched(spec: str, channel: str) -> None:
    x, mask = batch()
    before = x.clone()
    for dtype, bits in ((torch.float32, torch.int32), (torch.bfloat16, torch.int16)):
        y = Augmenter(spec, channel, seed=1)(x.to(dtype), mask)
        assert y.shape == x.shape and y.dtype == dtype
        assert torch.equal(y[~mask].view(bits), x.to(dtype)[~mask].view(bits))  # bitwise
        assert torch.isfinite(y).all()
    assert torch.equal(x, before)  # the input is never modified in place


@pytest.mark.parametrize("level", ["light", "strong"])
def test_every_family_together_keeps_padding_bitwise(level: str) -> None:
    x, mask = batch()
    echo = torch.zeros((2, 8, 40))
    echo[:, 0], echo[1, 3] = 1.0, 0.5
    augmenter = Augmenter(level, level, seed=1, noise=level, reverb=level, noise_bank=x[0, :60], rir_bank=echo)
    for dtype, bits in ((torch.float32, torch.int32), (torch.bfloat16, torch.int16)):
        y = augmenter(x.to(dtype), mask)
        assert y.shape == x.shape and y.dtype == dtype and torch.isfinite(y).all()
        assert torch.equal(y[~mask].view(bits), x.to(dtype)[~mask].view(bits))
        assert not torch.equal(y[mask], x.to(dtype)[mask])


def test_off_is_identity() -> None:
    x, mask = batch()
    augmenter = Augmenter.from_params(TrainParams(), seed=0)
    assert not augmenter.active
    assert augmenter(x, mask) is x
    with pytest.raises(ValueError, match="huge"):
        Augmenter("huge", "off")


@pytest.mark.parametrize(("spec", "channel"), [("strong", "off"), ("off", "strong"), ("light", "light")])
def test_deterministic_for_a_seed(spec: str, channel: str) -> None:
    x, mask = batch()
    a, b, c = Augmenter(spec, channel, seed=3), Augmenter(spec, channel, seed=3), Augmenter(spec, channel, seed=4)
    first = [a(x, mask) for _ in range(3)]
    assert all(torch.equal(p, q) for p, q in zip(first, [b(x, mask) for _ in range(3)], strict=True))
    assert not torch.equal(first[0], first[1])  # a fresh draw every batch
    assert not torch.equal(first[0], c(x, mask))


@pytest.mark.parametrize(("spec", "channel"), [s for s in ALL if s != ("off", "off")])
def test_every_level_changes_real_frames(spec: str, channel: str) -> None:
    x, mask = batch()
    y = Augmenter(spec, channel, seed=0)(x, mask)
    assert not torch.equal(y[mask], x[mask])
    # never extreme: nothing leaves the range the raw features plus a strong channel can reach
    assert y[mask].min() >= x[mask].min() - db_to_nat(20) and y[mask].max() <= x[mask].max() + db_to_nat(20)


def test_gain_shifts_the_mean_by_its_db() -> None:
    x, mask = batch()
    for db in (-6.0, 3.0, 6.0):
        y = channel_perturb(x, mask, ChannelLevel(gain_db=(db, db)), torch.Generator().manual_seed(0))
        assert (y - x)[mask].mean().item() == pytest.approx(db * math.log(10) / 10, abs=1e-5)
        assert torch.equal(y[~mask], x[~mask])


def test_tilt_and_eq_are_smooth_and_frame_constant() -> None:
    x, mask = batch()
    level = ChannelLevel(tilt_db=(-8.0, 8.0), eq_db=4.0)
    y = channel_perturb(x, mask, level, torch.Generator().manual_seed(0))
    response = (y - x)[0]  # (T, F): the same curve in every frame of a full-length utterance
    assert torch.allclose(response, response[0].expand_as(response), atol=1e-5)
    assert response[0].abs().max() <= db_to_nat(4.0 + 8.0 / 2) + 1e-5
    assert response[0].diff().abs().max() < db_to_nat(3.0)  # smooth: no jumps between neighbouring bins


@pytest.mark.parametrize(("snr", "lowest", "highest"), [(30.0, 0.0, 0.25), (5.0, 0.8, 20.0)])
def test_noise_at_high_snr_changes_little_at_low_snr_a_lot(snr: float, lowest: float, highest: float) -> None:
    x, mask = batch()
    level = ChannelLevel(noise_prob=1.0, snr_db=(snr, snr), noise_color_db=6.0, noise_jitter_db=1.0)
    y = channel_perturb(x, mask, level, torch.Generator().manual_seed(0))
    change = (y - x)[mask]
    assert (change >= 0).all()  # adding power only ever raises log energies
    assert lowest <= change.mean().item() <= highest
    # the noise floor lifts the quietest cells most: the dynamic range shrinks, a lot at a low SNR
    assert y[mask].std() < x[mask].std() * (0.8 if snr < 10 else 1.0)


def test_noise_power_matches_the_snr() -> None:
    """Added power over real cells / signal power over real cells is 10^(-snr/10), within jitter."""
    x, mask = batch(b=8, t=128)
    level = ChannelLevel(noise_prob=1.0, snr_db=(10.0, 10.0), noise_color_db=6.0, noise_jitter_db=1.0)
    y = channel_perturb(x, mask, level, torch.Generator().manual_seed(0))
    real = mask.unsqueeze(-1).expand_as(x)
    ratio = (y.exp() - x.exp())[real].sum() / x.exp()[real].sum()
    assert ratio.item() == pytest.approx(0.1, rel=0.2)


def test_specaugment_makes_zero_variance_spans_filled_with_the_mean() -> None:
    x, mask = batch()
    level = SpecAugmentLevel(time_masks=2, time_width=20, time_ratio=0.2, freq_masks=2, freq_width=8)
    y = spec_augment(x, mask, level, torch.Generator().manual_seed(0))
    changed = (y != x) & mask.unsqueeze(-1)
    assert changed.any()
    real_mean = x.masked_fill(~mask.unsqueeze(-1), 0).sum(1) / mask.sum(1, keepdim=True)
    filled = real_mean.unsqueeze(1).expand_as(x)
    assert torch.allclose(y[changed], filled[changed])
    # a masked band is constant over the real frames of its utterance: zero variance along time
    full = mask.all(1)
    band_var = y[full].var(dim=1)  # (B_full, F)
    assert (band_var == 0).any()
    # a masked span: consecutive real frames that are identical (all bins)
    same_as_next = (y[:, 1:] == y[:, :-1]).all(-1) & mask[:, 1:]
    assert same_as_next.any()
    # widths respect the level: no utterance loses more than 2 x 20 frames or 2 x 8 bins
    whole_frames = changed.all(-1).sum(1)
    assert (whole_frames <= 40).all()
    assert (whole_frames <= (mask.sum(1) * 0.2).floor() * 2).all()


def test_levels_table() -> None:
    assert set(SPEC_LEVELS) == set(CHANNEL_LEVELS) == set(LEVELS) == {"off", "light", "strong"}
    assert SPEC_LEVELS["off"] is None and CHANNEL_LEVELS["off"] is None
    light, strong = CHANNEL_LEVELS["light"], CHANNEL_LEVELS["strong"]
    assert light is not None and strong is not None and strong.snr_db[0] < light.snr_db[0]


def test_meta_device_runs_without_data() -> None:
    x, mask = batch()
    y = Augmenter("strong", "strong", seed=0, noise="strong", reverb="strong")(x.to("meta"), mask.to("meta"))
    assert y.device.type == "meta" and y.shape == x.shape and y.dtype == x.dtype


def test_accelerator_batches_use_a_generator_on_their_own_device() -> None:
    """No CUDA here: check that a CUDA batch would draw from a CUDA generator (no host round trip)."""
    made: list[object] = []
    real_generator = torch.Generator

    def fake_generator(device: object = None) -> torch.Generator:
        made.append(device)
        return real_generator()  # a CPU stand-in: seeding works the same

    augmenter = Augmenter("light", "light", seed=0)
    with mock.patch.object(augment_module.torch, "Generator", side_effect=fake_generator):
        first = augmenter.generator(torch.device("cuda", 0))
        assert augmenter.generator(torch.device("cuda", 0)) is first  # one per device, kept
        augmenter.generator(torch.device("cpu"))
        augmenter.generator(torch.device("meta"))  # meta shares the CPU generator (it draws nothing)
    assert made == [torch.device("cuda", 0), None]


@pytest.mark.parametrize("field", ["specaugment", "channel_aug", "noise_aug", "reverb_aug"])
def test_train_params_validate_levels(field: str) -> None:
    params = TrainParams.from_params({f"train.{field}": "strong"})
    assert getattr(params, field) == "strong" and params.to_params()[f"train.{field}"] == "strong"
    with pytest.raises(ConfigError, match="huge"):
        TrainParams.from_params({f"train.{field}": "huge"})


def test_train_with_augmentation(cli: CliRunner, hw4_sample: Path, tmp_path: Path) -> None:
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"encoder": "transformer", "pooling": "mean", "head": "softmax",
                                  "encoder.transformer.d_model": 64, "encoder.transformer.nhead": 2,
                                  "encoder.transformer.dim_feedforward": 128,
                                  "train.batch_size": 16, "train.segment_len": 96, "train.lr": 3e-3,
                                  "train.specaugment": "strong", "train.channel_aug": "strong"}))
    out = tmp_path / "run"
    code, _, stderr = run(cli, "train", "--config", config, "--data", hw4_sample, "--steps", 60,
                          "--valid-every", 30, "--device", "cpu", "--out", out)
    assert code == 0, stderr
    params = json.loads((out / "config.json").read_text())["params"]
    assert params["train.specaugment"] == "strong" and params["train.channel_aug"] == "strong"
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(m["valid_acc"] for m in metrics) > 0.2  # chance is 0.1 (10 speakers)


def test_train_refuses_an_unknown_level(cli: CliRunner, hw4_sample: Path, tmp_path: Path) -> None:
    config = tmp_path / "cfg.json"
    config.write_text(json.dumps({"train.specaugment": "huge"}))
    code, _, stderr = run(cli, "train", "--preset", "simple", "--config", config, "--data", hw4_sample,
                          "--steps", 5, "--device", "cpu", "--out", tmp_path / "run")
    assert code == 2
    # the CLI draws the (empty) progress line before the parameters are checked; the error is one line
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train.specaugment" in errors[0] and "'huge'" in errors[0]
    assert not (tmp_path / "run").exists()
