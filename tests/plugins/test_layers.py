"""Numerical checks of specific layers against their papers' formulas."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from automel.encoders.conformer import ConformerBlock, ConformerConfig
from automel.encoders.transformer import Transformer, TransformerConfig
from automel.heads.aam_softmax import AAMSoftmax, AAMSoftmaxConfig, AngularMarginHead
from automel.heads.am_softmax import AMSoftmax, AMSoftmaxConfig
from automel.layers import MaskedBatchNorm1d
from automel.pooling.attentive_stats import AttentiveStatsPooling, AttentiveStatsPoolingConfig
from automel.pooling.mean import MeanPooling, MeanPoolingConfig
from automel.pooling.self_attention import SelfAttentionPooling, SelfAttentionPoolingConfig


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _mask(lengths: list[int]) -> Tensor:
    return torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


def _unit(angles: Tensor) -> Tensor:
    """2-d unit vectors at ``angles`` (radians): ``(N,) -> (N, 2)``."""
    return torch.stack([torch.cos(angles), torch.sin(angles)], dim=-1)


# --- heads --------------------------------------------------------------------------------------


def test_am_softmax_logits() -> None:
    s, m = 30.0, 0.25
    head = AMSoftmax.build(AMSoftmaxConfig(embed_dim=None, scale=s, margin=m), 8, 5)
    x, labels = torch.randn(4, 8), torch.tensor([0, 3, 3, 1])
    cos = nn.functional.normalize(x, dim=1) @ nn.functional.normalize(head.weight, dim=1).T
    expected = s * (cos - m * nn.functional.one_hot(labels, 5))
    torch.testing.assert_close(head(x, labels), expected)
    torch.testing.assert_close(head(x), s * cos)  # no labels, no margin


def test_aam_softmax_target_is_cos_theta_plus_m() -> None:
    s, m, theta = 30.0, 0.3, 1.0
    head = AAMSoftmax.build(AAMSoftmaxConfig(embed_dim=None, scale=s, margin=m), 2, 3)
    with torch.no_grad():
        head.weight.copy_(_unit(torch.tensor([0.0, 2.0, -2.5])))
    x = _unit(torch.tensor([theta]))  # angle 1.0 to class 0
    logits = head(x, torch.tensor([0]))
    assert logits[0, 0].item() == pytest.approx(s * math.cos(theta + m), abs=1e-4)
    assert logits[0, 1].item() == pytest.approx(s * math.cos(2.0 - theta), abs=1e-4)  # non-target: s cos
    assert head(x)[0, 0].item() == pytest.approx(s * math.cos(theta), abs=1e-4)


def test_aam_softmax_threshold_branch_past_pi() -> None:
    s, m, theta = 30.0, 0.3, 3.0  # theta + m > pi: cos(theta + m) would rise again
    head = AAMSoftmax.build(AAMSoftmaxConfig(embed_dim=None, scale=s, margin=m), 2, 2)
    with torch.no_grad():
        head.weight.copy_(_unit(torch.tensor([0.0, 1.0])))
    logits = head(_unit(torch.tensor([theta])), torch.tensor([0]))
    expected = s * (math.cos(theta) - math.sin(math.pi - m) * m)
    assert logits[0, 0].item() == pytest.approx(expected, abs=1e-4)
    assert logits[0, 0].item() < s * math.cos(theta + m)  # the naive formula would be larger


def test_aam_softmax_easy_margin_only_for_acute_angles() -> None:
    s, m = 30.0, 0.3
    head = AAMSoftmax.build(AAMSoftmaxConfig(embed_dim=None, scale=s, margin=m, easy_margin=True), 2, 1)
    with torch.no_grad():
        head.weight.copy_(_unit(torch.tensor([0.0])))
    x = _unit(torch.tensor([1.0, 2.0]))  # cos > 0, cos < 0
    logits = head(x, torch.tensor([0, 0]))
    assert logits[0, 0].item() == pytest.approx(s * math.cos(1.0 + m), abs=1e-4)
    assert logits[1, 0].item() == pytest.approx(s * math.cos(2.0), abs=1e-4)


def test_aam_softmax_gradient_finite_at_zero_angle() -> None:
    head = AAMSoftmax.build(AAMSoftmaxConfig(embed_dim=None), 2, 2)
    with torch.no_grad():
        head.weight.copy_(_unit(torch.tensor([0.0, 1.0])))
    x = _unit(torch.tensor([0.0])).requires_grad_(True)  # cos = 1 exactly
    nn.functional.cross_entropy(head(x, torch.tensor([0])), torch.tensor([0])).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


@pytest.mark.parametrize("plugin", [AMSoftmax, AAMSoftmax])
def test_margin_warmup(plugin: type[AMSoftmax] | type[AAMSoftmax]) -> None:
    config = plugin.config_cls(embed_dim=None, margin=0.3, margin_warmup=0.2)
    head = plugin.build(config, 6, 4)
    x, labels = torch.randn(3, 6), torch.tensor([0, 1, 2])
    head.set_progress(0.0)
    assert head.margin.item() == 0.0
    torch.testing.assert_close(head(x, labels), head(x))  # no margin yet
    head.set_progress(0.1)
    assert head.margin.item() == pytest.approx(0.15)
    for progress in (0.2, 0.7, 1.0):
        head.set_progress(progress)
        assert head.margin.item() == pytest.approx(0.3)
    assert not torch.allclose(head(x, labels), head(x))


def test_margin_without_warmup_is_constant() -> None:
    head = AMSoftmax.build(AMSoftmaxConfig(margin=0.2, margin_warmup=0.0), 6, 4)
    head.set_progress(0.0)
    assert head.margin.item() == pytest.approx(0.2)


def test_margin_head_projection_shapes() -> None:
    head = AMSoftmax.build(AMSoftmaxConfig(embed_dim=32), 20, 7)
    assert head.weight.shape == (7, 32)
    assert head(torch.randn(5, 20), torch.arange(5)).shape == (5, 7)
    assert isinstance(AAMSoftmax.build(AAMSoftmaxConfig(), 20, 7), AngularMarginHead)


# --- poolings -----------------------------------------------------------------------------------


def test_masked_mean_ignores_padding_values() -> None:
    pool = MeanPooling.build(MeanPoolingConfig(), 3)
    x = torch.randn(2, 5, 3)
    mask = _mask([5, 2])
    x[1, 2:] = float("nan")  # whatever is in the padding, even NaN
    out = pool(x, mask)
    torch.testing.assert_close(out[0], x[0].mean(dim=0))
    torch.testing.assert_close(out[1], x[1, :2].mean(dim=0))


def test_self_attention_pooling_weights_real_frames_only() -> None:
    pool = SelfAttentionPooling.build(SelfAttentionPoolingConfig(hidden=0), 4)
    x, mask = torch.randn(2, 6, 4), _mask([4, 6])
    x[0, 4:] = 1e4
    weights = torch.softmax(pool.score(x[0, :4]).squeeze(-1), dim=0)
    torch.testing.assert_close(pool(x, mask)[0], weights @ x[0, :4])


def test_attentive_stats_pooling() -> None:
    d = 5
    pool = AttentiveStatsPooling.build(AttentiveStatsPoolingConfig(hidden=8), d)
    assert pool.out_dim == 2 * d
    x, mask = torch.randn(3, 9, d), _mask([9, 4, 1])
    x[1, 4:] = 1e3
    out = pool(x, mask)
    assert out.shape == (3, 2 * d)
    assert (out[:, d:] > 0).all()  # std is positive (floored), even for a one-frame utterance
    torch.testing.assert_close(out[2, d:], torch.full((d,), math.sqrt(1e-5)))
    # Uniform attention (a zero last layer) reduces ASP to the plain mean and population std.
    last = pool.score[-1] if isinstance(pool.score, nn.Sequential) else None
    assert isinstance(last, nn.Linear)
    with torch.no_grad():
        last.weight.zero_()
    out = pool(x, mask)
    real = x[1, :4]
    torch.testing.assert_close(out[1, :d], real.mean(dim=0))
    torch.testing.assert_close(out[1, d:], real.std(dim=0, unbiased=False), atol=1e-5, rtol=1e-4)


# --- encoders -----------------------------------------------------------------------------------


def test_transformer_defaults_are_the_seed_layer() -> None:
    encoder = Transformer.build(TransformerConfig(), 40)
    assert encoder.prenet.in_features == 40 and encoder.out_dim == 80
    layers = encoder.layers.layers
    assert len(layers) == 1 and encoder.layers.norm is None
    layer = layers[0]
    assert not layer.norm_first and layer.self_attn.num_heads == 2
    assert layer.linear1.out_features == 256 and layer.dropout.p == 0.1
    assert isinstance(layer.activation, nn.ReLU)  # PyTorch's default, as in the seed


def test_conformer_block_order_and_half_step_residuals() -> None:
    """ff1 -> mhsa -> conv -> ff2 -> final norm, with 1/2 on both feed-forwards (paper, eq. 1)."""
    block = ConformerBlock(ConformerConfig(d_model=8, nhead=2, dim_feedforward=16, kernel_size=3))
    assert [name for name, _ in block.named_children()] == ["ff1", "mhsa", "conv", "ff2", "final_norm"]
    seen: list[tuple[str, Tensor]] = []

    class Ones(nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.label = name

        def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
            seen.append((self.label, x.clone()))
            return torch.ones_like(x)

    for name in ("ff1", "mhsa", "conv", "ff2"):
        setattr(block, name, Ones(name))
    block.final_norm = nn.Identity()
    x = torch.zeros(1, 3, 8)
    out = block(x, _mask([3]))
    assert [name for name, _ in seen] == ["ff1", "mhsa", "conv", "ff2"]
    # Each sub-module sees the residual stream so far: 0, +0.5, +1, +1, then +0.5 from ff2.
    assert [inp[0, 0, 0].item() for _, inp in seen] == [0.0, 0.5, 1.5, 2.5]
    torch.testing.assert_close(out, torch.full_like(x, 3.0))


def test_conformer_sub_modules_are_pre_norm() -> None:
    block = ConformerBlock(ConformerConfig(d_model=8, nhead=2, dim_feedforward=16, kernel_size=3))
    assert isinstance(block.ff1.net[0], nn.LayerNorm) and isinstance(block.ff2.net[0], nn.LayerNorm)
    assert isinstance(block.mhsa.norm, nn.LayerNorm) and isinstance(block.conv.norm, nn.LayerNorm)
    assert block.conv.depthwise.groups == 8 and block.conv.depthwise.kernel_size == (3,)


def test_masked_batch_norm_training_ignores_padded_frames() -> None:
    channels = 3
    masked, plain = MaskedBatchNorm1d(channels), nn.BatchNorm1d(channels)
    plain.load_state_dict(masked.state_dict())
    lengths = [6, 3, 1]
    mask = _mask(lengths)
    x = torch.randn(3, channels, 6) * 2 + 1
    x = torch.where(mask.unsqueeze(1), x, torch.full_like(x, 1e3))  # huge padding
    out = masked.train()(x, mask)
    # Reference: ordinary BatchNorm on the real frames alone, laid side by side as one sequence.
    real = torch.cat([x[i, :, :n] for i, n in enumerate(lengths)], dim=1).unsqueeze(0)
    reference = plain.train()(real)
    torch.testing.assert_close(torch.cat([out[i, :, :n] for i, n in enumerate(lengths)], dim=1), reference[0])
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)
    assert masked.num_batches_tracked is not None and masked.num_batches_tracked.item() == 1
    # Eval mode: running statistics, as nn.BatchNorm1d.
    torch.testing.assert_close(masked.eval()(x, mask), plain.eval()(x))
