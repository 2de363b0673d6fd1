"""The margin-head bases: shared config and search space, and float32 logits under autocast."""

from __future__ import annotations

import dataclasses

import optuna
import pytest
import torch

from automel.heads._margin import EMBED_CHOICES, MarginConfig, MarginHead, MarginHeadPlugin
from automel.heads.aam_softmax import AAMSoftmax, AAMSoftmaxConfig
from automel.heads.am_softmax import AMSoftmax, AMSoftmaxConfig

MARGIN_PLUGINS = [AMSoftmax, AAMSoftmax]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("plugin", MARGIN_PLUGINS)
@pytest.mark.parametrize("embed_dim", [None, 16])
def test_autocast_logits_match_fp32_logits(plugin: type[MarginHeadPlugin], embed_dim: int | None) -> None:
    """bf16 cosines would move the logits in steps of ~0.12 at s = 30; the head computes in fp32."""
    head = plugin.build(plugin.config_cls(embed_dim=embed_dim, margin_warmup=0.0), 32, 10).eval()
    x, labels = torch.randn(8, 32), torch.arange(8)
    for given in (labels, None):
        fp32 = head(x, given)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = head(x, given)
            from_bf16 = head(x.bfloat16(), given)  # what a pooling under autocast hands over
        assert mixed.dtype == torch.float32 and from_bf16.dtype == torch.float32
        torch.testing.assert_close(mixed, fp32, rtol=0, atol=1e-5)
        torch.testing.assert_close(from_bf16, head(x.bfloat16().float(), given), rtol=0, atol=1e-5)


def test_gradients_reach_a_bf16_embedding() -> None:
    head = AMSoftmax.build(AMSoftmaxConfig(embed_dim=None), 12, 4)
    x = torch.randn(5, 12, dtype=torch.bfloat16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(
            head(x, torch.tensor([0, 1, 2, 3, 0])), torch.tensor([0, 1, 2, 3, 0])
        )
    loss.backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16 and torch.isfinite(x.grad).all()


def test_configs_share_the_margin_fields_in_their_order() -> None:
    base = [f.name for f in dataclasses.fields(MarginConfig)]
    assert base == ["embed_dim", "scale", "margin", "margin_warmup"]
    assert [f.name for f in dataclasses.fields(AMSoftmaxConfig)] == base
    assert [f.name for f in dataclasses.fields(AAMSoftmaxConfig)] == [*base, "easy_margin"]


@pytest.mark.parametrize("config_cls", [AMSoftmaxConfig, AAMSoftmaxConfig])
@pytest.mark.parametrize(
    ("field", "value"), [("embed_dim", 0), ("scale", 0.0), ("margin", -0.1), ("margin_warmup", 1.5)]
)
def test_configs_refuse_unusable_values(config_cls: type[MarginConfig], field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        config_cls(**{field: value})


def test_trial_parameters_keep_their_names_and_distributions() -> None:
    """Studies recorded before the margin base must still load: same names, same distributions."""
    expected = {
        AMSoftmax: {"embed_dim": EMBED_CHOICES, "scale": (15.0, 40.0), "margin": (0.1, 0.4)},
        AAMSoftmax: {"embed_dim": EMBED_CHOICES, "scale": (15.0, 40.0), "margin": (0.1, 0.5)},
    }
    for plugin, fields in expected.items():
        study = optuna.create_study()
        trial = study.ask()
        config = plugin.suggest(trial)
        assert isinstance(config, plugin.config_cls)
        assert list(trial.distributions) == [f"head.{plugin.name}.{f}" for f in fields]
        choices = trial.distributions[f"head.{plugin.name}.embed_dim"]
        assert isinstance(choices, optuna.distributions.CategoricalDistribution)
        assert tuple(choices.choices) == (None, 128, 192, 256)
        for field in ("scale", "margin"):
            dist = trial.distributions[f"head.{plugin.name}.{field}"]
            assert isinstance(dist, optuna.distributions.FloatDistribution)
            assert (dist.low, dist.high) == fields[field]


def test_saved_params_rebuild_the_same_config() -> None:
    params = {
        "head.aam-softmax.embed_dim": None,
        "head.aam-softmax.scale": 32.0,
        "head.aam-softmax.margin": 0.3,
        "head.aam-softmax.margin_warmup": 0.1,
        "head.aam-softmax.easy_margin": True,
    }
    config = AAMSoftmax.from_params(params)
    assert config == AAMSoftmaxConfig(
        embed_dim=None, scale=32.0, margin=0.3, margin_warmup=0.1, easy_margin=True
    )
    assert AAMSoftmax.to_params(config) == params
    head = AAMSoftmax.build(config, 8, 3)
    assert isinstance(head, MarginHead) and head.easy_margin and head.scale == 32.0
    am = AMSoftmax.from_params({"head.am-softmax.margin": 0.35})
    assert am == AMSoftmaxConfig(margin=0.35)
