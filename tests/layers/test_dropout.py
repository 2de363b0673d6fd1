"""The CPU dropout: PyTorch's dropout in distribution, seeded by PyTorch's generator, nn.Dropout elsewhere."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from automel.layers import Dropout, MaskedSelfAttention, cpu_dropout


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_the_mask_drops_p_of_the_elements_and_keeps_the_expectation(p: float) -> None:
    torch.manual_seed(0)
    x = torch.full((1000, 1000), 2.0)
    y = cpu_dropout(x, p)
    kept = y != 0
    assert abs(kept.float().mean().item() - (1 - p)) < 0.002  # 1e6 draws: sd 0.0005
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 2.0 / (1 - p)), rtol=1e-4, atol=0.0)
    assert abs(y.mean().item() - 2.0) < 0.01
    # Every lane of the 64-bit words is used alike (a word's sign bit would be a biased lane).
    lane_rates = kept.flatten()[: 4 * 200_000].view(-1, 4).float().mean(dim=0)
    assert torch.all((lane_rates - (1 - p)).abs() < 0.005), lane_rates


def test_the_mask_follows_torch_manual_seed_and_changes_between_calls() -> None:
    x = torch.randn(64, 33)  # an odd element count: the last word is cut
    torch.manual_seed(7)
    first, second = cpu_dropout(x, 0.2), cpu_dropout(x, 0.2)
    torch.manual_seed(7)
    torch.testing.assert_close(cpu_dropout(x, 0.2), first, rtol=0, atol=0)
    assert not torch.equal(first, second)


def test_the_gradient_is_the_same_mask_and_scale() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 50, requires_grad=True)
    y = cpu_dropout(x, 0.25)
    y.sum().backward()
    assert x.grad is not None
    expected = torch.where(y != 0, 1 / 0.75, 0.0)
    torch.testing.assert_close(x.grad, expected)


def test_dtype_and_shape_are_kept_and_a_bad_rate_is_refused() -> None:
    x = torch.randn(4, 5, 6, dtype=torch.bfloat16)
    assert cpu_dropout(x, 0.1).dtype == torch.bfloat16
    assert cpu_dropout(x, 0.1).shape == x.shape
    assert cpu_dropout(x, 1e-7) is x  # rounds to no drop at all
    with pytest.raises(ValueError, match=r"1\.0 must be in \[0, 1\)"):
        cpu_dropout(x, 1.0)


def test_the_module_is_an_nn_dropout_that_is_identity_in_eval() -> None:
    module = Dropout(0.5)
    assert isinstance(module, nn.Dropout)
    x = torch.randn(10, 10)
    assert torch.equal(module.eval()(x), x)
    torch.manual_seed(3)
    trained = module.train()(x)
    torch.manual_seed(3)
    assert torch.equal(trained, cpu_dropout(x, 0.5))


def test_off_the_cpu_the_module_is_pytorchs_dropout() -> None:
    x = torch.empty(4, 8, device="meta")
    out = Dropout(0.5).train()(x)
    assert out.device.type == "meta" and out.shape == x.shape


@pytest.mark.parametrize("padded", [False, True])
def test_attention_with_cpu_dropout_is_sdpa_when_no_weight_is_dropped(padded: bool) -> None:
    """The hand-written attention path equals SDPA's: a rate that rounds to zero drops nothing."""
    torch.manual_seed(0)
    attention = MaskedSelfAttention(16, 4, dropout=1e-7).train()
    x = torch.randn(3, 9, 16)
    mask = torch.ones(3, 9, dtype=torch.bool)
    if padded:
        mask[1, 5:] = mask[2, 2:] = False
    expected = attention.eval()(x, mask)
    got = attention.train()(x, mask)
    torch.testing.assert_close(got[mask], expected[mask], atol=1e-5, rtol=1e-5)


def test_attention_dropout_keeps_the_expected_output() -> None:
    torch.manual_seed(0)
    attention = MaskedSelfAttention(8, 2, dropout=0.3)
    x = torch.randn(2, 6, 8)
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    with torch.no_grad():
        plain = attention.eval()(x, mask)
        attention.train()
        draws = torch.stack([attention(x, mask) for _ in range(4000)])
    assert not torch.allclose(draws[0], plain)
    torch.testing.assert_close(draws.mean(dim=0)[mask], plain[mask], atol=0.03, rtol=0.0)
    # A padded key gets no weight, dropped or not: padding never reaches a real frame.
    noisy = x.clone()
    noisy[1, 4:] = 1e6
    with torch.no_grad():
        torch.manual_seed(1)
        a = attention(x, mask)
        torch.manual_seed(1)
        b = attention(noisy, mask)
    torch.testing.assert_close(a[mask], b[mask], atol=1e-5, rtol=1e-5)


def test_sdpa_math_and_the_cpu_path_agree_in_distribution() -> None:
    """Same rate, same mean output as ``F.scaled_dot_product_attention``'s own dropout."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 1, 5, 4) for _ in range(3))
    attention = MaskedSelfAttention(4, 1, dropout=0.4)
    ours = torch.stack([attention._attend_with_cpu_dropout(q, k, v, None) for _ in range(4000)]).mean(0)
    theirs = torch.stack([F.scaled_dot_product_attention(q, k, v, dropout_p=0.4) for _ in range(4000)]).mean(0)
    torch.testing.assert_close(ours, theirs, atol=0.05, rtol=0.0)
