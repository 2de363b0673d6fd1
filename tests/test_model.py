"""build_model, resolve_model_params and the presets."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from automel.errors import ConfigError, PluginError
from automel.heads._margin import MarginHead
from automel.model import SpeakerModel, build_model, resolve_model_params
from automel.presets import PRESETS, preset_params
from automel.registry import Registry
from automel.testing.plugins import FixedWidthPooling, LyingPooling, NoOutDimEncoder

N_MELS, N_CLASSES = 40, 600


def _batch(lengths: list[int], n_mels: int = N_MELS) -> tuple[Tensor, Tensor]:
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return torch.randn(len(lengths), max(lengths), n_mels), mask


@pytest.mark.parametrize("name", ["simple", "medium", "hard", "boss"])
def test_presets_build_and_forward(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(preset_params(name), N_MELS, N_CLASSES)
    assert isinstance(model, SpeakerModel) and model.training  # the probe leaves the mode alone
    x, mask = _batch([30, 17, 5])
    labels = torch.tensor([0, 599, 42])
    assert model(x, mask, labels).shape == (3, N_CLASSES)
    model.eval()
    with torch.no_grad():
        assert model(x, mask).shape == (3, N_CLASSES)
        assert model.embed(x, mask).shape == (3, model.pooling.out_dim)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_complete(name: str) -> None:
    """A preset lists every field of its plugins: resolving it changes nothing."""
    assert resolve_model_params(PRESETS[name]) == PRESETS[name]


def test_preset_contents() -> None:
    assert PRESETS["simple"]["encoder.transformer.d_model"] == 80
    assert PRESETS["medium"]["encoder.transformer.num_layers"] == 3
    assert (PRESETS["hard"]["encoder"], PRESETS["hard"]["head"]) == ("conformer", "softmax")
    boss = PRESETS["boss"]
    assert (boss["encoder"], boss["pooling"], boss["head"]) == ("conformer", "self-attention", "am-softmax")


def test_preset_params_is_a_copy_and_unknown_names_listed() -> None:
    preset_params("simple")["encoder"] = "conformer"
    assert PRESETS["simple"]["encoder"] == "transformer"
    with pytest.raises(ConfigError, match=r"unknown preset 'nope' \(known: simple, medium, hard, boss\)"):
        preset_params("nope")


class SeedClassifier(nn.Module):
    """The HW4 seed's model, verbatim apart from formatting."""

    def __init__(self, d_model: int = 80, n_spks: int = 600, dropout: float = 0.1) -> None:
        super().__init__()
        self.prenet = nn.Linear(40, d_model)
        self.encoder_layer = nn.TransformerEncoderLayer(d_model=d_model, dim_feedforward=256, nhead=2)
        self.pred_layer = nn.Sequential(nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, n_spks))

    def forward(self, mels: Tensor) -> Tensor:
        out = self.prenet(mels).permute(1, 0, 2)
        out = self.encoder_layer(out).transpose(0, 1)
        return self.pred_layer(out.mean(dim=1))


def test_simple_preset_is_the_seed_model() -> None:
    torch.manual_seed(0)
    ours, seed = build_model(preset_params("simple"), N_MELS, N_CLASSES).eval(), SeedClassifier().eval()
    # the feature normalisation (mode "none" for simple, as in the course) holds the only extra buffers
    assert ours.norm.mode == "none"
    ours_state = {k: v for k, v in ours.state_dict().items() if not k.startswith("norm.")}
    seed_state = seed.state_dict()
    assert [v.shape for v in ours_state.values()] == [v.shape for v in seed_state.values()]
    seed.load_state_dict(dict(zip(seed_state, ours_state.values(), strict=True)))
    x, mask = _batch([50, 50])  # the seed has no padding mask: compare on full-length segments
    with torch.no_grad():
        torch.testing.assert_close(ours(x, mask), seed(x), atol=1e-5, rtol=1e-5)


def test_missing_plugin_key() -> None:
    params = preset_params("simple")
    del params["pooling"]
    with pytest.raises(PluginError, match="lack 'pooling'"):
        build_model(params, N_MELS, N_CLASSES)
    with pytest.raises(PluginError, match="lack 'encoder'"):
        resolve_model_params({})


def test_unknown_plugin_and_unknown_field() -> None:
    with pytest.raises(PluginError, match=r"unknown encoder 'lstm' \(installed: conformer, tdnn, transformer"):
        build_model({**preset_params("simple"), "encoder": "lstm"}, N_MELS, N_CLASSES)
    with pytest.raises(PluginError, match="no parameter 'layers'"):
        build_model({**preset_params("simple"), "encoder.transformer.layers": 2}, N_MELS, N_CLASSES)


def test_resolve_fills_defaults_and_drops_other_keys() -> None:
    params = {
        "encoder": "transformer",
        "pooling": "attentive-stats",
        "head": "aam-softmax",
        "encoder.transformer.num_layers": 2.0,
        "encoder.conformer.num_layers": 4,  # another encoder's parameter: dropped
        "train.lr": 1e-3,
    }
    resolved = resolve_model_params(params)
    assert resolved["encoder.transformer.num_layers"] == 2
    assert resolved["encoder.transformer.d_model"] == 80
    assert resolved["pooling.attentive-stats.hidden"] == 128
    assert resolved["head.aam-softmax.easy_margin"] is False
    assert not any(k.startswith(("train.", "encoder.conformer.")) for k in resolved)
    assert build_model(resolved, N_MELS, 7).pooling.out_dim == 160


# --- dimension checks, with fake plugins in a fresh registry ------------------------------------


@pytest.fixture
def registry() -> Registry:
    registry = Registry()
    registry.load_builtins()
    for plugin in (LyingPooling, FixedWidthPooling, NoOutDimEncoder):
        registry.register(plugin, "automel-test-fakes")
    return registry


def test_module_without_out_dim(registry: Registry) -> None:
    params = {**preset_params("simple"), "encoder": "no-out-dim"}
    with pytest.raises(
        PluginError, match=r"encoder 'no-out-dim' built a Identity without a positive int 'out_dim'"
    ):
        build_model(params, N_MELS, N_CLASSES, registry)


def test_output_not_matching_out_dim(registry: Registry) -> None:
    params = {**preset_params("simple"), "pooling": "lying"}
    with pytest.raises(PluginError, match=r"pooling 'lying' returned shape \(2, 160\), expected \(2, 80\)"):
        build_model(params, N_MELS, N_CLASSES, registry)


def test_module_ignoring_in_dim(registry: Registry) -> None:
    params = {**preset_params("simple"), "pooling": "fixed-width"}
    with pytest.raises(
        PluginError, match=r"pooling .fixed-width. failed on a probe batch of its declared input size"
    ):
        build_model(params, N_MELS, N_CLASSES, registry)


def test_shape_probe_does_not_move_the_global_rng() -> None:
    """Seeded runs stay reproducible: only weight initialisation draws from the global RNG."""
    torch.manual_seed(1)
    build_model(preset_params("boss"), N_MELS, 10)
    with_probe = torch.rand(3)
    torch.manual_seed(1)
    build_model(preset_params("boss"), N_MELS, 10, probe=False)
    assert torch.equal(with_probe, torch.rand(3))


def test_set_progress_reaches_the_head() -> None:
    model = build_model(preset_params("boss"), N_MELS, 10)
    assert isinstance(model.head, MarginHead)
    model.set_progress(0.0)
    assert model.head.margin.item() == 0.0
    model.set_progress(1.0)
    assert model.head.margin.item() == pytest.approx(0.2)
