"""Every plugin, built-in or installed, against the contract in automel.testing.

The plugins come from an explicit registry with autoload on (:func:`installed`), built when the tests are
collected (``pytest_generate_tests``), not when this module is imported: the default registry of the core
suite stays built-ins only.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import optuna
import pytest
import torch

from automel import testing
from automel.model import build_model
from automel.plugin import KINDS, SCALES, Plugin, using_search_scale
from automel.registry import Registry, build_registry, default_registry
from automel.testing.plugins import LeakyPooling, leaky_norm_encoder

MODULE_CHECKS: dict[str, Callable[..., None]] = {
    "shapes": testing.check_shapes,
    "eval-masking": testing.check_eval_masking,
    "train-masking": testing.check_train_masking,
    "gradients": testing.check_gradients,
    "state-dict": testing.check_state_dict_roundtrip,
}
N_SAMPLED = 2  # configs drawn from each plugin's own search space, besides its defaults


@functools.cache
def installed() -> Registry:
    """Built-ins plus every installed plugin package (such as this repository's automel-ecapa), loaded once."""
    return build_registry(autoload=True)


def plugins() -> list[type[Plugin]]:
    return [entry.plugin for kind in KINDS for entry in installed().entries(kind)]


def _id(plugin: type[Plugin]) -> str:
    return f"{plugin.kind}:{plugin.name}"


def _configs(plugin: type[Plugin]) -> list[tuple[str, Any]]:
    sampled = testing.sample_configs(plugin, N_SAMPLED)
    return [("default", plugin.config_cls()), *((f"sampled{i}", cfg) for i, (_, cfg) in enumerate(sampled))]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize by argument names: ``check`` (every module check on every plugin and config), ``plugin``
    (every plugin), ``encoder, pooling, head`` (every combination of names)."""
    args = set(metafunc.fixturenames)
    if "check" in args and "plugin" in args:
        metafunc.parametrize(("plugin", "check", "config"), [
            pytest.param(plugin, check, config, id=f"{_id(plugin)}-{check_name}-{config_name}")
            for plugin in plugins()
            for config_name, config in _configs(plugin)
            for check_name, check in MODULE_CHECKS.items()
        ])
    elif "plugin" in args:
        metafunc.parametrize("plugin", plugins(), ids=_id)
    elif {"encoder", "pooling", "head"} <= args:
        metafunc.parametrize(("encoder", "pooling", "head"), [
            pytest.param(*names, id="+".join(names))
            for names in itertools.product(*(installed().names(kind) for kind in KINDS))
        ])


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny tensors: intra-op threads only add overhead (and spin on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_module_contract(plugin: type[Plugin], check: Callable[..., None], config: Any) -> None:
    check(plugin, config)


@pytest.mark.parametrize("scale", SCALES)
def test_suggest_roundtrip(plugin: type[Plugin], scale: str) -> None:
    with using_search_scale(scale):
        testing.check_suggest_roundtrip(plugin)
        # the sizes a search samples build working modules at either scale
        for _, config in testing.sample_configs(plugin, 2, seed=1):
            testing.check_shapes(plugin, config)


def test_cpu_scale_keeps_encoders_small() -> None:
    registry = default_registry()
    for name in ("transformer", "conformer"):
        plugin = registry.get("encoder", name)
        with using_search_scale("cpu"):
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
            configs = [plugin.suggest(study.ask()) for _ in range(30)]
        assert max(c.d_model for c in configs) <= 96 and max(c.num_layers for c in configs) <= 2


def test_every_builtin_is_checked() -> None:
    names = {_id(p) for p in plugins()}
    assert {"encoder:transformer", "encoder:conformer", "pooling:mean", "pooling:self-attention"} <= names
    assert {"pooling:attentive-stats", "head:softmax", "head:am-softmax", "head:aam-softmax"} <= names
    assert "encoder:tdnn" in names


def test_full_model_masking_invariance(encoder: str, pooling: str, head: str) -> None:
    """``model.embed`` (and inference logits) of an utterance alone equal it padded in a batch."""
    n_mels, lengths = 10, (11, 4, 7)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        names = {"encoder": encoder, "pooling": pooling, "head": head}
        model = build_model(names, n_mels, 6, installed()).eval()
        x = 100.0 * torch.randn(len(lengths), max(lengths), n_mels)  # padding: large noise
        mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
        x[mask] = torch.randn(int(mask.sum()), n_mels)
    with torch.no_grad():
        embedded, logits = model.embed(x, mask), model(x, mask)
        for i, length in enumerate(lengths):
            alone_x, alone_mask = x[i : i + 1, :length], mask[i : i + 1, :length]
            torch.testing.assert_close(model.embed(alone_x, alone_mask)[0], embedded[i], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(model(alone_x, alone_mask)[0], logits[i], atol=1e-5, rtol=1e-5)


# --- the kit itself: each check fails, with a clear message, on a plugin that breaks its rule ---


@pytest.mark.parametrize(
    ("check", "message"),
    [
        (testing.check_masking_invariance, r"pooling 'leaky': utterance 0 \(length 9\) .* leak"),
        (testing.check_gradients, r"parameter 'unused.weight' gets no gradient"),
        (testing.check_suggest_roundtrip, r"trial parameter 'width' does not start with 'pooling.leaky.'"),
    ],
)
def test_kit_catches_broken_plugin(check: Callable[..., None], message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check(LeakyPooling)


TRAIN_LEAKS = {
    "outputs": r"encoder 'leaky-outputs': in train mode \(dropout off\), the same batch padded to 19 frames "
    r"instead of 13 changes the real outputs by up to .*MaskedBatchNorm1d",
    "buffers": r"encoder 'leaky-buffers': in train mode \(dropout off\), the same batch padded to 19 frames "
    r"instead of 13 changes buffer 'tracker.running_mean'",
    "random": r"encoder 'leaky-random': two forwards of one batch differ by up to .* in train mode",
}


@pytest.mark.parametrize("leak", list(TRAIN_LEAKS))
def test_train_mode_check_catches_what_eval_mode_cannot(leak: str) -> None:
    plugin = leaky_norm_encoder(leak)
    testing.check_eval_masking(plugin)  # eval mode: running statistics, per frame, so no leak shows
    testing.check_shapes(plugin)
    for check in (testing.check_train_masking, testing.check_masking_invariance, testing.check_plugin):
        with pytest.raises(AssertionError, match=TRAIN_LEAKS[leak]):
            check(plugin)


def test_train_mode_check_passes_masked_batch_norm_and_dropout_modules() -> None:
    testing.check_plugin(leaky_norm_encoder("none"))
