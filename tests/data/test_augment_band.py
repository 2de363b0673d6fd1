"""Telephone and codec band limits (automel.data.augment.channel) and the mel axis they read (augment.mel)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from automel.data.augment import BANDS, CHANNEL_LEVELS, Augmenter, ChannelLevel, FrontEnd, band_gains, band_limit
from automel.data.augment.channel import TELEPHONE, channel_perturb
from automel.data.frontend import FbankParams
from automel.errors import DataError
from tests.data.test_augment import batch

DB = 10 / math.log(10)  # natural-log power to dB


def limited(low: float, high: float, frontend: FrontEnd | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                                                torch.Tensor, torch.Tensor]:
    x, mask = batch()
    gains = torch.as_tensor(band_gains(frontend or FrontEnd(), ((low, high),)))[0]
    y = band_limit(x, mask, gains.expand(len(x), -1), torch.ones(len(x), dtype=torch.bool))
    return x, y, mask, gains


def band_power_db(z: torch.Tensor, mask: torch.Tensor, bins: torch.Tensor) -> float:
    return float(torch.logsumexp(z[:, :, bins][mask], dim=(0, 1)) * DB)


@pytest.mark.parametrize("cutoff", [4000.0, 5500.0, 7000.0])
def test_codec_cutoff_removes_the_energy_above_it(cutoff: float) -> None:
    frontend = FrontEnd()
    x, y, mask, _ = limited(0.0, cutoff, frontend)
    fraction = torch.as_tensor(frontend.band_fraction(0.0, cutoff))
    above, below = fraction == 0, fraction == 1
    assert above.any() and below.any()
    assert band_power_db(x, mask, above) - band_power_db(y, mask, above) > 30.0  # down to the noise floor
    assert torch.equal(y[:, :, below], x[:, :, below])  # bins wholly inside the band: bitwise
    assert torch.equal(y[~mask], x[~mask])
    # above the cut-off: the signal 60 dB down, power-summed with the utterance's noise floor (its quietest cell)
    floor = x.masked_fill(~mask.unsqueeze(-1), math.inf).amin((1, 2)).view(-1, 1, 1)
    expected = torch.logaddexp(x[:, :, above] - 60 / DB, floor.expand_as(x[:, :, above]))
    assert torch.allclose(y[:, :, above][mask], expected[mask], atol=1e-3)


def test_telephone_band_removes_both_ends_with_a_steep_roll_off() -> None:
    frontend = FrontEnd()
    x, y, mask, gains = limited(*TELEPHONE, frontend)
    centres = torch.as_tensor(frontend.centres_hz())
    outside = (centres < 200) | (centres > 3700)
    assert (gains[outside] < -10).all() and (gains[(centres > 450) & (centres < 3100)] == 0).all()
    assert band_power_db(x, mask, outside) - band_power_db(y, mask, outside) > 30.0
    # steep: from passing everything to removing 90 % within three bins at each edge
    crossing = ((gains > math.log(0.999)) & (gains.roll(-3) < math.log(0.1))) | \
               ((gains > math.log(0.999)) & (gains.roll(3) < math.log(0.1)))
    assert int(crossing.sum()) >= 2


def test_band_gains_follow_the_recorded_front_end() -> None:
    """At 8 kHz (Nyquist 4 kHz) a 4 kHz codec removes nothing; a telephone line still removes the top."""
    info = {"features": {"frontend": "kaldi-native-fbank", **{k: v for k, v in
            FbankParams(sample_rate=8000).to_json().items() if k != "frontend"}}}
    narrow = FrontEnd.of(info, 40)
    assert not narrow.assumed and narrow.nyquist == 4000 and narrow.centres_hz()[-1] < 4000
    gains = band_gains(narrow, ((0.0, 4000.0), TELEPHONE))
    assert np.all(gains[0] == 0) and np.any(gains[1] < -5)
    assert FrontEnd.of({}, 40).assumed and FrontEnd.of({}, 64).fbank.n_mels == 64
    with pytest.raises(DataError, match="40 mel bins but the features have 80"):
        FrontEnd.of(info, 80)


def test_channel_levels_band_limit_some_utterances() -> None:
    light, strong = CHANNEL_LEVELS["light"], CHANNEL_LEVELS["strong"]
    assert light is not None and strong is not None and 0 < light.band_prob < strong.band_prob
    assert light.bands == strong.bands == BANDS
    x, mask = batch(b=8)
    x = x.repeat(4, 1, 1)
    mask = mask.repeat(4, 1)
    level = ChannelLevel(band_prob=0.5)
    y = channel_perturb(x, mask, level, torch.Generator().manual_seed(0))
    top = y[:, :, -4:].masked_fill(~mask.unsqueeze(-1), 0).abs().sum((1, 2)) > 0  # something to compare
    changed = (y[:, :, -4:] != x[:, :, -4:]).flatten(1).any(1) & top
    assert 4 <= int(changed.sum()) <= 28  # about half of the 32
    assert torch.equal(y[~mask], x[~mask])


def test_augmenter_channel_with_bands_needs_no_host_sync() -> None:
    x, mask = batch()
    y = Augmenter("off", "strong", seed=0)(x.to("meta"), mask.to("meta"))
    assert y.device.type == "meta" and y.shape == x.shape
