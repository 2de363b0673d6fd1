"""The contract checks. Each drives the plugin through its kind's adapter (:mod:`automel.testing._kinds`)."""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from automel.errors import ExportError
from automel.plugin import Plugin, set_head_progress
from automel.testing._kinds import ADAPTERS, LENGTHS, PAD_SCALE, KindAdapter, label

IN_DIM: dict[str, int] = {kind: adapter.in_dim for kind, adapter in ADAPTERS.items()}
NUM_CLASSES = 5
TOLERANCE = 1e-5
SEED = 0
EXTRA_PADDING = 6  # the train-mode check pads the same batch to max(LENGTHS) and this many more frames
DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


@dataclasses.dataclass
class _Batch:
    x: Tensor  # (B, T, in_dim) for encoders and poolings, (B, in_dim) for heads
    mask: Tensor  # (B, T)
    labels: Tensor  # (B,)


@contextmanager
def _seeded(seed: int = SEED) -> Iterator[None]:
    """A fixed seed and one intra-op thread, restoring the caller's RNG state and thread count.

    The checks' tensors are tiny: extra threads only add overhead, and on a busy machine their
    spin-waiting makes a check many times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(threads)


def _adapter(plugin: type[Plugin]) -> KindAdapter:
    return ADAPTERS[plugin.kind]


def _in_dim(plugin: type[Plugin], in_dim: int | None) -> int:
    return in_dim if in_dim is not None else _adapter(plugin).in_dim


def _build(plugin: type[Plugin], config: Any, in_dim: int, num_classes: int) -> nn.Module:
    config = config if config is not None else plugin.config_cls()
    module = _adapter(plugin).build(plugin, config, in_dim, num_classes)
    assert isinstance(module, nn.Module), f"{label(plugin)}: build() returned {type(module).__name__}"
    return module


def _batch(plugin: type[Plugin], in_dim: int, num_classes: int, lengths: tuple[int, ...] = LENGTHS) -> _Batch:
    """Inputs for ``len(lengths)`` utterances (or rows), with their mask ``(B, max(lengths))`` and labels."""
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    labels = torch.arange(len(lengths)) % num_classes
    return _Batch(_adapter(plugin).inputs(mask, in_dim), mask, labels)


def _label_sets(adapter: KindAdapter, labels: Tensor) -> tuple[Tensor | None, ...]:
    """Call with labels and without where they may matter (margin heads), else once without."""
    return (labels, None) if adapter.uses_labels else (None,)


def check_shapes(
    plugin: type[Plugin], config: Any = None, *, in_dim: int | None = None, num_classes: int = NUM_CLASSES
) -> None:
    """Outputs have the documented shape (using ``out_dim``) and are finite, in train and eval mode."""
    adapter, dim = _adapter(plugin), _in_dim(plugin, in_dim)
    with _seeded():
        module = _build(plugin, config, dim, num_classes)
        batch = _batch(plugin, dim, num_classes)
        expected = adapter.output_shape(module, batch.mask, num_classes)
        set_head_progress(module, 1.0)
        for training in (True, False):
            module.train(training)
            for labels in _label_sets(adapter, batch.labels):
                with torch.no_grad():
                    out = adapter.call(module, batch.x, batch.mask, labels)
                mode = f"{'train' if training else 'eval'} mode{'' if labels is None else ' with labels'}"
                assert isinstance(out, Tensor), f"{label(plugin)} returned {type(out).__name__} in {mode}"
                assert tuple(out.shape) == expected, (
                    f"{label(plugin)} returned shape {tuple(out.shape)} in {mode}, expected {expected}"
                )
                real = adapter.real(out, batch.mask)
                assert torch.isfinite(real).all(), f"{label(plugin)} returned non-finite values in {mode}"


def check_eval_masking(
    plugin: type[Plugin], config: Any = None, *, in_dim: int | None = None, num_classes: int = NUM_CLASSES
) -> None:
    """Eval mode: each utterance alone equals the same utterance padded in a batch, to 1e-5.

    Encoders are compared on real frames, poolings on pooled vectors; heads (no mask) must treat
    each row independently of the rest of the batch, with and without labels.
    """
    adapter, dim = _adapter(plugin), _in_dim(plugin, in_dim)
    with _seeded():
        module = _build(plugin, config, dim, num_classes).eval()
        set_head_progress(module, 1.0)
        batch = _batch(plugin, dim, num_classes)
        with torch.no_grad():
            for labels in _label_sets(adapter, batch.labels):
                together = adapter.call(module, batch.x, batch.mask, labels)
                for i, length in enumerate(batch.mask.sum(dim=1).tolist()):
                    x, mask = adapter.alone(batch.x, batch.mask, i)
                    alone = adapter.call(module, x, mask, None if labels is None else labels[i : i + 1])
                    got = adapter.real(together[i : i + 1], batch.mask[i : i + 1])
                    want = adapter.real(alone, mask)
                    what = adapter.item.format(i=i, length=length) + ("" if labels is None else " (with labels)")
                    diff = (got - want).abs().max().item()
                    assert torch.allclose(got, want, atol=TOLERANCE, rtol=TOLERANCE), (
                        f"{label(plugin)}: {what} differs from it alone in eval mode by up to {diff:.3g} "
                        f"(> {TOLERANCE}); {adapter.leak_hint}"
                    )


def _without_dropout(module: nn.Module) -> nn.Module:
    """``module`` with p = 0 in every dropout module and in ``nn.MultiheadAttention``; nothing else changes.

    Train mode stays on (BatchNorm keeps using batch statistics): only the randomness goes, which
    would otherwise differ between two inputs of different lengths.
    """
    for sub in module.modules():
        if isinstance(sub, DROPOUTS):
            sub.p = 0.0
        elif isinstance(sub, nn.MultiheadAttention):
            sub.dropout = 0.0
    return module


def _repadded(dim: int) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """The same real frames (``LENGTHS``) as two ``(x (B, T, dim), mask (B, T))`` batches: padded to
    ``max(LENGTHS)`` and to ``EXTRA_PADDING`` more frames, each with its own large noise in the padding."""
    t = max(LENGTHS)
    real = torch.randn(len(LENGTHS), t, dim)
    batches = []
    for frames in (t, t + EXTRA_PADDING):
        mask = torch.arange(frames).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)
        x = F.pad(real, (0, 0, 0, frames - t))
        batches.append((torch.where(mask.unsqueeze(-1), x, PAD_SCALE * torch.randn_like(x)), mask))
    return batches[0], batches[1]


def check_train_masking(
    plugin: type[Plugin], config: Any = None, *, in_dim: int | None = None, num_classes: int = NUM_CLASSES
) -> None:
    """Train mode, dropout off: padding changes neither real outputs nor buffers (running statistics).

    Training normalises with batch statistics, so an utterance alone is not the reference here: the
    same batch is padded to two lengths (with different noise) and fed to two copies of the module.
    Real frames' outputs (encoders) or pooled vectors (poolings) must agree to 1e-5, and so must every
    buffer afterwards. A plain ``nn.BatchNorm1d`` over padded frames fails this; use
    :class:`automel.layers.MaskedBatchNorm1d`. Dropout must live in ``nn.Dropout*`` modules (or
    ``nn.MultiheadAttention``) so that it can be switched off. Heads (no mask) are not checked.
    """
    adapter = _adapter(plugin)
    if not adapter.padded:
        return
    dim = _in_dim(plugin, in_dim)
    mode = "in train mode (dropout off)"
    with _seeded():
        module = _without_dropout(_build(plugin, config, dim, num_classes).train())
        (x1, mask1), (x2, mask2) = _repadded(dim)
        copies = [copy.deepcopy(module) for _ in range(3)]
        outs = []
        with torch.no_grad():
            # The first batch twice (different seeds: is train mode deterministic?), then the second.
            for i, (x, mask) in enumerate(((x1, mask1), (x1, mask1), (x2, mask2))):
                torch.manual_seed(SEED + 1 + i)
                outs.append(adapter.call(copies[i], x, mask, None))
    again = (outs[0] - outs[1]).abs().max().item()
    assert torch.allclose(outs[0], outs[1], atol=TOLERANCE, rtol=TOLERANCE), (
        f"{label(plugin)}: two forwards of one batch differ by up to {again:.3g} {mode}, so padding "
        "cannot be checked in train mode; is there randomness besides nn.Dropout* modules "
        "(F.dropout cannot be switched off from outside)?"
    )
    first, second = adapter.real(outs[0], mask1), adapter.real(outs[2], mask2)
    what = f"the same batch padded to {mask2.shape[1]} frames instead of {mask1.shape[1]}"
    diff = (first - second).abs().max().item()
    assert torch.allclose(first, second, atol=TOLERANCE, rtol=TOLERANCE), (
        f"{label(plugin)}: {mode}, {what} changes the real outputs by up to {diff:.3g} (> {TOLERANCE}); "
        "padding leaks into real frames (a BatchNorm whose batch statistics count padded frames? "
        "use automel.layers.MaskedBatchNorm1d)"
    )
    for (name, a), (_, b) in zip(copies[0].named_buffers(), copies[2].named_buffers(), strict=True):
        a, b = a.double(), b.double()  # integer counters too (num_batches_tracked)
        assert torch.allclose(a, b, atol=TOLERANCE, rtol=TOLERANCE), (
            f"{label(plugin)}: {mode}, {what} changes buffer '{name}' by up to "
            f"{(a - b).abs().max().item():.3g}; padded frames leak into this running "
            "statistic (use automel.layers.MaskedBatchNorm1d)"
        )


def check_masking_invariance(
    plugin: type[Plugin], config: Any = None, *, in_dim: int | None = None, num_classes: int = NUM_CLASSES
) -> None:
    """Padding never reaches real frames: :func:`check_eval_masking`, then :func:`check_train_masking`."""
    check_eval_masking(plugin, config, in_dim=in_dim, num_classes=num_classes)
    check_train_masking(plugin, config, in_dim=in_dim, num_classes=num_classes)


def check_gradients(
    plugin: type[Plugin], config: Any = None, *, in_dim: int | None = None, num_classes: int = NUM_CLASSES
) -> None:
    """Train mode: every parameter, and the input, gets a finite gradient from a loss on the output.

    Heads are trained with cross-entropy on ``head(embedding, labels)``; encoders and poolings with
    a random projection of their (real-frame) outputs.
    """
    adapter, dim = _adapter(plugin), _in_dim(plugin, in_dim)
    with _seeded():
        module = _build(plugin, config, dim, num_classes).train()
        set_head_progress(module, 1.0)
        batch = _batch(plugin, dim, num_classes)
        x = batch.x.clone().requires_grad_(True)
        out = adapter.call(module, x, batch.mask, batch.labels)
        adapter.loss(adapter.real(out, batch.mask), batch.labels).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all(), (
        f"{label(plugin)}: the input gets no finite gradient, so nothing before this plugin would learn"
    )
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        assert param.grad is not None, f"{label(plugin)}: parameter '{name}' gets no gradient (unused?)"
        assert torch.isfinite(param.grad).all(), f"{label(plugin)}: parameter '{name}' has a non-finite gradient"


def sample_configs(plugin: type[Plugin], n: int, seed: int = SEED) -> list[tuple[dict[str, Any], Any]]:
    """``n`` (trial params, config) pairs sampled at random from the plugin's search space."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "new study created" line per check
    try:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    finally:
        optuna.logging.set_verbosity(verbosity)
    samples = []
    for _ in range(n):
        trial = study.ask()
        config = plugin.suggest(trial)
        samples.append((dict(trial.params), config))
        study.tell(trial, 0.0)
    return samples


def check_suggest_roundtrip(plugin: type[Plugin], n_trials: int = 5) -> None:
    """The search space replays and serialises exactly.

    For trials of one study (so Optuna would also reject a name sampled with two distributions):
    ``suggest`` returns a ``config_cls``; every parameter is ``{kind}.{name}.<field>`` with the
    config's value; ``FixedTrial(trial.params)`` rebuilds the same config; and
    ``from_params(to_params(config)) == config``.
    """
    prefix = f"{plugin.kind}.{plugin.name}."
    fields = {f.name for f in dataclasses.fields(plugin.config_cls)}
    for params, config in sample_configs(plugin, n_trials):
        assert isinstance(config, plugin.config_cls), (
            f"{label(plugin)}: suggest() returned {type(config).__name__}, not {plugin.config_cls.__name__}"
        )
        as_params = plugin.to_params(config)
        for key, value in params.items():
            assert key.startswith(prefix), f"{label(plugin)}: trial parameter '{key}' does not start with '{prefix}'"
            assert key[len(prefix) :] in fields, f"{label(plugin)}: trial parameter '{key}' is not a config field"
            assert as_params[key] == value, (
                f"{label(plugin)}: trial parameter '{key}' = {value!r} but the config holds {as_params[key]!r}"
            )
        replayed = plugin.suggest(optuna.trial.FixedTrial(params))
        assert replayed == config, f"{label(plugin)}: FixedTrial({params}) gave {replayed}, not {config}"
        restored = plugin.from_params(as_params)
        assert restored == config, f"{label(plugin)}: from_params(to_params(config)) gave {restored}, not {config}"


def check_state_dict_roundtrip(
    plugin: type[Plugin], config: Any = None, *, in_dim: int | None = None, num_classes: int = NUM_CLASSES
) -> None:
    """A second build loading the first's ``state_dict`` (after a training step moved any running
    statistics) gives identical eval outputs: all state that matters is saved."""
    adapter, dim = _adapter(plugin), _in_dim(plugin, in_dim)
    with _seeded(SEED):
        first = _build(plugin, config, dim, num_classes)
        batch = _batch(plugin, dim, num_classes)
        with torch.no_grad():
            adapter.call(first.train(), batch.x, batch.mask, batch.labels)
    with _seeded(SEED + 1), torch.no_grad():
        second = _build(plugin, config, dim, num_classes)
        second.load_state_dict(first.state_dict())
        a = adapter.real(adapter.call(first.eval(), batch.x, batch.mask, None), batch.mask)
        b = adapter.real(adapter.call(second.eval(), batch.x, batch.mask, None), batch.mask)
    assert torch.equal(a, b), (
        f"{label(plugin)}: after load_state_dict the outputs differ by up to {(a - b).abs().max().item():.3g}; "
        "is some state (a buffer, a plain tensor attribute) missing from the state dict?"
    )


# The other two plugins of the small model that check_export builds around the plugin under test.
EXPORT_COMPANIONS: dict[str, str] = {"encoder": "transformer", "pooling": "mean", "head": "softmax"}


def export_model_of(plugin: type[Plugin], config: Any = None, *, in_dim: int | None = None,
                    num_classes: int = NUM_CLASSES) -> nn.Module:
    """A small :class:`automel.model.SpeakerModel` of ``plugin`` (with ``config``) and the built-in
    :data:`EXPORT_COMPANIONS`, after one training forward on a padded batch (so running statistics are
    not the defaults), in eval mode. ``in_dim`` sets the mel bins when ``plugin`` is an encoder."""
    from automel.model import build_model
    from automel.registry import Registry

    config = config if config is not None else plugin.config_cls()
    registry = Registry()
    registry.load_builtins()
    if plugin.name in registry.names(plugin.kind):
        registry.unregister(plugin.kind, plugin.name)  # the plugin under test wins over a built-in of its name
    registry.register(plugin, distribution="automel.testing")
    params = {**EXPORT_COMPANIONS, plugin.kind: plugin.name, **plugin.to_params(config)}
    n_mels = in_dim if in_dim is not None and plugin.kind == "encoder" else ADAPTERS["encoder"].in_dim
    with _seeded():
        model = build_model(params, n_mels, num_classes, registry)
        set_head_progress(model, 1.0)
        mask = torch.arange(max(LENGTHS)).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)
        x = ADAPTERS["encoder"].inputs(mask, n_mels)
        with torch.no_grad():
            _without_dropout(model.train())(x, mask)
    return model.eval()


def check_export(plugin: type[Plugin], config: Any = None, *, in_dim: int | None = None,
                 num_classes: int = NUM_CLASSES, formats: Iterable[str] | None = None) -> None:
    """The plugin exports: a small model of it (:func:`export_model_of`) written as ONNX and TorchScript
    (or ``formats``) gives, on padded batches of other sizes than it was traced with, the logits and
    embeddings of PyTorch to within 1e-4 (:func:`automel.exporting.check_parity`).

    A plugin that cannot export fails with the exporter's reason. A missing ``automel[onnx]`` extra is
    an :class:`~automel.errors.ExportError` (not the plugin's fault): pass ``formats=["torchscript"]``
    to check without it.
    """
    from automel.exporting import FORMATS, export_model, require_formats

    chosen = require_formats(list(formats) if formats is not None else list(FORMATS))
    model = export_model_of(plugin, config, in_dim=in_dim, num_classes=num_classes)
    n_mels = in_dim if in_dim is not None and plugin.kind == "encoder" else ADAPTERS["encoder"].in_dim
    others = " + ".join(f"{kind} '{name}'" for kind, name in EXPORT_COMPANIONS.items() if kind != plugin.kind)
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in chosen:
            try:
                with _seeded():
                    export_model(model, Path(tmp), fmt, n_mels, what=f"{label(plugin)} (with {others})")
            except ExportError as exc:
                raise AssertionError(str(exc)) from exc


CHECKS: tuple[Callable[..., None], ...] = (
    check_shapes,
    check_masking_invariance,
    check_gradients,
    check_state_dict_roundtrip,
)


def check_plugin(
    plugin: type[Plugin], *, in_dim: int | None = None, num_classes: int = NUM_CLASSES, n_sampled: int = 2,
    export: bool = False,
) -> None:
    """All checks: the search-space round trip, then every module check on the default config and on
    ``n_sampled`` configs drawn from the plugin's own search space; with ``export``, :func:`check_export`
    on each of them too (it needs the ``automel[onnx]`` extra)."""
    check_suggest_roundtrip(plugin)
    configs = [plugin.config_cls(), *(config for _, config in sample_configs(plugin, n_sampled))]
    for config in configs:
        for check in CHECKS:
            check(plugin, config, in_dim=in_dim, num_classes=num_classes)
        if export:
            check_export(plugin, config, in_dim=in_dim, num_classes=num_classes)
