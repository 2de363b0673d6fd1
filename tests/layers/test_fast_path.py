"""The masked layers' fast path: exact against PyTorch's own modules, padded or not, old weights intact."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from automel.encoders.transformer import TransformerConfig, TransformerEncoder
from automel.layers import MaskedBatchNorm1d, MaskedSelfAttention, has_padding, unpadded


def _batch(b: int = 4, c: int = 6, t: int = 20, lengths: tuple[int, ...] = (20, 13, 7, 20)):
    torch.manual_seed(0)
    x = torch.randn(b, c, t) * 3 + 5  # a large mean: the variance must still come out exact
    mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    return x, mask


def test_has_padding_looks_at_cpu_masks_and_trusts_the_hint() -> None:
    full, padded = torch.ones(2, 5, dtype=torch.bool), torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    assert not has_padding(None) and not has_padding(full) and has_padding(padded)
    with unpadded(padded):  # the caller vouches for this very object
        assert not has_padding(padded)
        assert has_padding(padded.clone())  # another object is looked at
    with unpadded(padded, known_unpadded=False):
        assert has_padding(padded)
    assert has_padding(padded)


def test_an_accelerator_mask_counts_as_padded_unless_vouched_for() -> None:
    mask = torch.ones(2, 5, dtype=torch.bool, device="meta")  # reading it would fail: nothing is read
    assert has_padding(mask)
    with unpadded(mask):
        assert not has_padding(mask)


def test_batchnorm_without_padding_is_pytorchs_batchnorm() -> None:
    x, _ = _batch()
    ours, theirs = MaskedBatchNorm1d(6), nn.BatchNorm1d(6)
    full = torch.ones(4, 20, dtype=torch.bool)
    torch.testing.assert_close(ours(x, full), theirs(x))
    torch.testing.assert_close(ours.running_var, theirs.running_var)


def test_padded_batchnorm_matches_batchnorm_over_the_real_frames_only() -> None:
    x, mask = _batch()
    x = x.masked_fill(~mask[:, None, :], float("nan"))  # padded frames may hold anything
    ours, theirs = MaskedBatchNorm1d(6), nn.BatchNorm1d(6)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 2), ours.bias.uniform_(-1, 1)
        theirs.load_state_dict(ours.state_dict())
    x.requires_grad_(True)
    y = ours(x, mask)
    real = x.detach().transpose(1, 2)[mask]  # (N, C): the real frames alone
    expected = theirs(real.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(y.transpose(1, 2)[mask], expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)
    assert torch.isfinite(y).all()  # padded outputs are finite, so no NaN can reach a gradient
    y.sum().backward()
    assert torch.isfinite(x.grad[mask.unsqueeze(1).expand_as(x)]).all()


def test_masked_and_plain_paths_agree_on_an_unpadded_batch() -> None:
    x, _ = _batch()
    full = torch.ones(4, 20, dtype=torch.bool)
    plain, masked = MaskedBatchNorm1d(6), MaskedBatchNorm1d(6)
    torch.testing.assert_close(masked._masked_training_forward(x, full), plain(x, full), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(masked.running_var, plain.running_var)


@pytest.mark.parametrize("padded", [False, True])
def test_self_attention_matches_multihead_attention(padded: bool) -> None:
    torch.manual_seed(0)
    ours, theirs = MaskedSelfAttention(16, 4).eval(), nn.MultiheadAttention(16, 4, batch_first=True).eval()
    theirs.load_state_dict(ours.state_dict())  # the same parameter names
    x = torch.randn(3, 9, 16)
    mask = torch.ones(3, 9, dtype=torch.bool)
    if padded:
        mask[1, 5:] = mask[2, 2:] = False
    expected, _ = theirs(x, x, x, key_padding_mask=~mask, need_weights=False)
    torch.testing.assert_close(ours(x, mask)[mask], expected[mask], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_loads_weights_saved_with_nn_transformer_encoder(norm_first: bool) -> None:
    """Models exported before the switch to SDPA: same state-dict keys, same outputs."""
    config = TransformerConfig(d_model=16, nhead=2, dim_feedforward=32, num_layers=2, norm_first=norm_first)
    layer = nn.TransformerEncoderLayer(16, 2, 32, batch_first=True, norm_first=norm_first)
    old = nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16) if norm_first else None,
                                enable_nested_tensor=False).eval()
    new = TransformerEncoder(config, in_dim=16).eval()
    new.layers.load_state_dict(copy.deepcopy(old.state_dict()))  # strict: every key matches
    x = torch.randn(3, 11, 16)
    mask = torch.ones(3, 11, dtype=torch.bool)
    mask[0, 6:] = False
    with torch.no_grad():
        expected = old(x, src_key_padding_mask=~mask)
        got = new.layers(x, mask)
    torch.testing.assert_close(got[mask], expected[mask], atol=1e-5, rtol=1e-5)
