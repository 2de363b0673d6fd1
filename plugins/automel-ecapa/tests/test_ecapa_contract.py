"""ECAPA-TDNN against automel's plugin contract: the kit, both search scales, masking, composition."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from automel_ecapa import EcapaTdnn, EcapaTdnnConfig
from automel_ecapa import ecapa as module

from automel.errors import PluginError
from automel.model import build_model
from automel.plugin import using_search_scale
from automel.registry import Registry
from automel.testing import CHECKS, check_plugin, check_suggest_roundtrip, sample_configs

SMALL = EcapaTdnnConfig(channels=16, scale=4, num_blocks=2, se_channels=4, mfa_channels=24)


def test_contract_kit_on_defaults_and_sampled_configs() -> None:
    # The paper's C = 512 default plus two sampled configs (gpu scale: the ranges outside a search).
    check_plugin(EcapaTdnn)


@pytest.mark.parametrize("scale", ["cpu", "gpu"])
def test_contract_kit_on_each_search_scale(scale: str) -> None:
    with using_search_scale(scale):
        check_suggest_roundtrip(EcapaTdnn, n_trials=8)
        configs = [config for _, config in sample_configs(EcapaTdnn, 2, seed=3)]
    for config in configs:
        for check in CHECKS:
            check(EcapaTdnn, config)


@pytest.mark.parametrize("scale", ["cpu", "gpu"])
def test_every_combination_of_choices_is_a_valid_config(scale: str) -> None:
    channels = module.CPU_CHANNEL_CHOICES if scale == "cpu" else module.CHANNEL_CHOICES
    for c, s in itertools.product(channels, module.SCALE_CHOICES):
        EcapaTdnnConfig(channels=c, scale=s)  # raises if a sampled pair could be invalid


def test_cpu_scale_stays_small() -> None:
    with using_search_scale("cpu"):
        configs = [config for _, config in sample_configs(EcapaTdnn, 30)]
    assert max(c.channels for c in configs) <= 128 and max(c.num_blocks for c in configs) <= 3
    with using_search_scale("gpu"):
        configs = [config for _, config in sample_configs(EcapaTdnn, 30)]
    assert {c.channels for c in configs} >= {512, 1024}


@pytest.mark.parametrize(
    ("params", "what"),
    [
        ({"channels": 100, "scale": 8}, "divisible"),
        ({"scale": 1}, "scale"),
        ({"num_blocks": 0}, "num_blocks"),
        ({"mfa_channels": 0}, "mfa_channels"),
    ],
)
def test_invalid_configs_are_refused_by_name(params: dict[str, Any], what: str) -> None:
    with pytest.raises(PluginError, match=what):
        EcapaTdnn.from_params({EcapaTdnn.param(k): v for k, v in params.items()})


def _padded_batch(pad: float, seed: int, frames: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    """Four utterances (21, 9, 30, 4 real frames, the same for every seed) padded to ``frames`` with noise."""
    lengths = torch.tensor([21, 9, 30, 4])
    mask = torch.arange(frames).unsqueeze(0) < lengths.unsqueeze(1)
    x = torch.randn(4, 30, 12, generator=torch.Generator().manual_seed(0))
    x = F.pad(x, (0, 0, 0, frames - 30))
    noise = pad * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    return torch.where(mask.unsqueeze(-1), x, noise), mask


def test_training_mode_ignores_padding_in_outputs_and_batchnorm_statistics() -> None:
    """Train mode: BatchNorm uses batch statistics, so compare one batch with two different paddings.

    The second copy is also padded further (45 frames, not 30): zeroed padded frames all look alike, so
    only a different amount of padding shows whether BatchNorm counts them.
    """
    torch.manual_seed(0)
    first = EcapaTdnn.build(SMALL, 12).train()
    second = EcapaTdnn.build(SMALL, 12).train()
    second.load_state_dict(first.state_dict())
    x1, mask1 = _padded_batch(100.0, seed=1)
    x2, mask2 = _padded_batch(-100.0, seed=2, frames=45)
    out1, out2 = first(x1, mask1), second(x2, mask2)
    assert torch.allclose(out1[mask1], out2[mask2], atol=1e-5)
    assert (out1[~mask1] == 0).all() and (out2[~mask2] == 0).all()
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), f"running statistic {name} saw the padding"


def test_real_frames_near_the_end_see_zeros_like_an_utterance_alone() -> None:
    """Dilated convolutions reach past the end: the batch must give what zero padding gives alone."""
    torch.manual_seed(0)
    encoder = EcapaTdnn.build(SMALL, 12).eval()
    x, mask = _padded_batch(100.0, seed=1)
    with torch.no_grad():
        together = encoder(x, mask)
        alone = encoder(x[3:4, :4], mask[3:4, :4])  # 4 frames: shorter than every dilated receptive field
    assert torch.allclose(together[3, :4], alone[0], atol=1e-5)


def test_forward_is_finite_when_padding_is_inf_or_nan() -> None:
    encoder = EcapaTdnn.build(SMALL, 12).eval()
    x, mask = _padded_batch(1.0, seed=1)
    x = x.masked_fill(~mask.unsqueeze(-1), float("nan"))
    x[1, -1] = float("inf")
    with torch.no_grad():
        assert torch.isfinite(encoder(x, mask)).all()


def test_out_dim_is_the_mfa_width() -> None:
    encoder = EcapaTdnn.build(SMALL, 12)
    assert encoder.out_dim == SMALL.mfa_channels
    # The paper's C = 512 model, with 80 mels: 4.8 M parameters before pooling and the embedding layer.
    paper = EcapaTdnn.build(EcapaTdnnConfig(), 80)
    assert 4.5e6 < sum(p.numel() for p in paper.parameters()) < 5.1e6


def _builtins(kind: str) -> list[str]:
    reference = Registry()
    reference.load_builtins()
    return reference.names(kind)  # type: ignore[arg-type]


@pytest.mark.parametrize("pooling", _builtins("pooling"))
@pytest.mark.parametrize("head", _builtins("head"))
def test_composes_with_every_builtin_pooling_and_head(registry: Registry, pooling: str, head: str) -> None:
    params = {"encoder": "ecapa-tdnn", "pooling": pooling, "head": head,
              **EcapaTdnn.to_params(SMALL), "train.normalize": "utterance"}
    torch.manual_seed(0)
    model = build_model(params, n_mels=12, num_classes=5, registry=registry).train()
    x, mask = _padded_batch(100.0, seed=1)
    labels = torch.tensor([0, 1, 2, 3])
    logits = model(x, mask, labels)
    assert logits.shape == (4, 5)
    F.cross_entropy(logits, labels).backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and torch.isfinite(param.grad).all(), name
