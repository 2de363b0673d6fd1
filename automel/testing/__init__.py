"""Contract checks and fake plugins for plugin authors: call them from your own tests.

    from automel.testing import check_plugin
    def test_my_encoder() -> None:
        check_plugin(MyEncoder)

Each check takes a plugin class (and optionally a config, the input width and the class count),
runs in well under a second with small dimensions and a fixed seed (without moving the caller's
global RNG), and raises ``AssertionError`` saying what broke. Shapes follow :mod:`automel.plugin`:
encoders and poolings get ``x (B, T, in_dim)`` and ``mask (B, T)`` (True = real frame); heads get
``embedding (B, in_dim)`` and ``labels (B,)``. Padded input frames hold large random values, so a
plugin that lets padding leak into real frames fails the masking check loudly: in eval mode (each
utterance alone against it in a padded batch) and in train mode with dropout off (one batch padded to
two lengths: real outputs and buffers such as BatchNorm running statistics must not move).
``check_plugin(MyEncoder, export=True)`` also exports a small model of the plugin to ONNX and TorchScript
and compares it with PyTorch (:func:`check_export`; ONNX needs the ``automel[onnx]`` extra).
:mod:`automel.layers` has the masked building blocks that pass both (``masked_fill_padding``,
``masked_mean``, ``MaskedBatchNorm1d``).

:mod:`automel.testing.plugins` holds small fake plugins, good and deliberately broken ones, to test
code that takes plugins (a registry, a model builder, a search) without a real model.
"""

from automel.testing._contract import (
    CHECKS,
    IN_DIM,
    NUM_CLASSES,
    check_eval_masking,
    check_export,
    check_gradients,
    check_masking_invariance,
    check_plugin,
    check_shapes,
    check_state_dict_roundtrip,
    check_suggest_roundtrip,
    check_train_masking,
    export_model_of,
    sample_configs,
)
from automel.testing._kinds import LENGTHS

__all__ = [
    "CHECKS",
    "IN_DIM",
    "LENGTHS",
    "NUM_CLASSES",
    "check_eval_masking",
    "check_export",
    "check_gradients",
    "check_masking_invariance",
    "check_plugin",
    "check_shapes",
    "check_state_dict_roundtrip",
    "check_suggest_roundtrip",
    "check_train_masking",
    "export_model_of",
    "sample_configs",
]
