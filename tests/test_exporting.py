"""ONNX and TorchScript exports (automel.exporting): parity with PyTorch, what they hold, and how they fail.

The files are run here the way a deployment would run them: ``onnxruntime.InferenceSession`` and
``torch.jit.load``, not through automel's own loader, on batch sizes and lengths other than the traced ones.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typer.testing import CliRunner

from automel import testing
from automel.ensemble import EnsembleModel
from automel.errors import ExportError
from automel.exporting import (
    FORMATS,
    PARITY_TOLERANCE,
    embedding_and_logits,
    export_model,
    load_exported,
    parse_formats,
    require_formats,
)
from automel.layers import always_masked, has_padding, masked_mean
from automel.model import SpeakerModel, build_model
from automel.model_folder import load_run
from automel.plugin import PoolingPlugin
from automel.presets import PRESETS
from automel.registry import Registry
from tests.conftest import run

N_MELS, CLASSES = 40, 7
# TorchScript is deprecated in favour of torch.export, but it is what `model.ts` users load.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
ort = pytest.importorskip("onnxruntime", reason="ONNX export is the automel[onnx] extra: pip install 'automel[onnx]'")


def padded(lengths: tuple[int, ...], n_mels: int = N_MELS, seed: int = 7) -> tuple[Tensor, Tensor]:
    """Variable-length utterances; padded frames hold large noise, so a leak shows."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    x = torch.randn(len(lengths), max(lengths), n_mels, generator=generator)
    noise = 100.0 * torch.randn(x.shape, generator=generator)
    return torch.where(mask.unsqueeze(-1), x, noise), mask


def preset_model(name: str, seed: int = 0) -> SpeakerModel:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(PRESETS[name], N_MELS, CLASSES)
        model.set_progress(1.0)
        model.norm.set_stats(torch.randn(N_MELS), torch.rand(N_MELS) + 0.5)
        x, mask = padded((40, 25, 33), seed=seed)
        with torch.no_grad():
            model.train()(x, mask)  # running statistics away from their defaults
    return model.eval()


def run_files(folder: Path, x: Tensor, mask: Tensor) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each exported file's ``(logits, embedding)``, run by onnxruntime and torch.jit as a deployment would."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["features", "mask"]
    assert [o.name for o in session.get_outputs()] == ["logits", "embedding"]
    onnx_out = session.run(None, {"features": x.numpy(), "mask": mask.numpy()})
    scripted = torch.jit.load(str(folder / "model.ts"))
    with torch.no_grad():
        ts_out = scripted(x, mask)
    return {"onnx": (onnx_out[0], onnx_out[1]), "torchscript": (ts_out[0].numpy(), ts_out[1].numpy())}


def assert_parity(model: torch.nn.Module, folder: Path, lengths: tuple[int, ...], n_mels: int = N_MELS) -> None:
    x, mask = padded(lengths, n_mels)
    with torch.no_grad():
        logits, embedding = embedding_and_logits(model, x, mask)
        assert torch.allclose(logits, model(x, mask))
    for fmt, (got_logits, got_embedding) in run_files(folder, x, mask).items():
        assert got_logits.shape == tuple(logits.shape) and got_embedding.shape == tuple(embedding.shape), fmt
        assert np.abs(got_logits - logits.numpy()).max() < PARITY_TOLERANCE, (fmt, lengths)
        assert np.abs(got_embedding - embedding.numpy()).max() < PARITY_TOLERANCE, (fmt, lengths)


# --- parity and dynamic axes ---


@pytest.mark.parametrize("preset", ["simple", "boss"])
def test_preset_exports_match_pytorch_on_padded_batches(tmp_path: Path, preset: str) -> None:
    model = preset_model(preset)
    written = export_model(model, tmp_path, "onnx,torchscript", N_MELS, what=preset)
    assert written == {"onnx": tmp_path / "model.onnx", "torchscript": tmp_path / "model.ts"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.ts"]  # no temporary left over
    # traced on a batch of 2: other batch sizes and lengths, padded and not, are the dynamic axes at work
    for lengths in ((61, 12, 30, 45, 8), (17,), (300,), (50, 50)):
        assert_parity(model, tmp_path, lengths)
    # the embedding is unit length; the model itself was left in eval mode and unchanged
    loaded = load_exported(tmp_path / "model.onnx", threads=1)
    _, embedding = loaded(*padded((20, 9)))
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
    assert not model.training


def test_embedding_is_the_heads_embedding_layer_normalised() -> None:
    x, mask = padded((30, 12))
    margin = preset_model("boss")  # AM-softmax with a 192-wide projection
    softmax = preset_model("simple")
    with torch.no_grad():
        logits, embedding = embedding_and_logits(margin, x, mask)
        pooled = margin.embed(x, mask)
        assert isinstance(margin.head.projection, nn.Module)
        torch.testing.assert_close(embedding, F.normalize(margin.head.projection(pooled), dim=-1))
        assert embedding.shape == (2, 192)
        torch.testing.assert_close(logits, margin(x, mask))
        # a softmax head has no embedding layer: the pooled vector it is
        logits, embedding = embedding_and_logits(softmax, x, mask)
        torch.testing.assert_close(embedding, F.normalize(softmax.embed(x, mask), dim=-1))
        torch.testing.assert_close(logits, softmax(x, mask))


def test_ensemble_exports_its_logits_and_a_weighted_embedding(tmp_path: Path) -> None:
    members = [preset_model("simple", seed=1), preset_model("boss", seed=2)]
    ensemble = EnsembleModel(members, [0.25, 0.75]).eval()
    x, mask = padded((26, 11, 19))
    with torch.no_grad():
        logits, embedding = embedding_and_logits(ensemble, x, mask)
        torch.testing.assert_close(logits, ensemble(x, mask))
        assert embedding.shape == (3, 80 + 192)
        # cosine of two ensemble embeddings = the weighted mean of the members' cosines
        singles = [embedding_and_logits(m, x, mask)[1] for m in members]
        cos = embedding[0] @ embedding[1]
        want = 0.25 * singles[0][0] @ singles[0][1] + 0.75 * singles[1][0] @ singles[1][1]
        torch.testing.assert_close(cos, want)
    export_model(ensemble, tmp_path, ["onnx", "torchscript"], N_MELS)
    assert_parity(ensemble, tmp_path, (33, 7, 21, 40))


def test_always_masked_makes_every_mask_padded() -> None:
    full = torch.ones(2, 5, dtype=torch.bool)
    assert not has_padding(full)
    with always_masked():
        assert has_padding(full)
        assert not has_padding(None)
    assert not has_padding(full)


# --- formats and the optional extra ---


def test_parse_formats() -> None:
    assert parse_formats(None) == ()
    assert parse_formats("onnx") == ("onnx",)
    assert parse_formats(["torchscript,onnx", "ONNX", "ts"]) == ("torchscript", "onnx")
    with pytest.raises(ExportError, match=r"unknown export format 'xyz'; choose from onnx, torchscript"):
        parse_formats("onnx,xyz")


def test_missing_onnxruntime_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what `import onnxruntime` does when it is absent
    with pytest.raises(ExportError, match=r"'onnxruntime'.*pip install 'automel\[onnx\]'") as caught:
        require_formats("onnx")
    assert "\n" not in str(caught.value)
    assert require_formats("torchscript") == ("torchscript",)  # TorchScript needs nothing extra
    model = preset_model("simple")
    with pytest.raises(ExportError, match=r"automel\[onnx\]"):
        export_model(model, tmp_path, "torchscript,onnx", N_MELS)
    assert list(tmp_path.iterdir()) == []  # all or nothing: not even the TorchScript file
    export_model(model, tmp_path, "torchscript", N_MELS)
    assert [p.name for p in tmp_path.iterdir()] == ["model.ts"]


# --- plugins that cannot take a format ---


@dataclass(frozen=True)
class _NoConfig:
    pass


class _Pooling(PoolingPlugin):
    config_cls = _NoConfig

    @classmethod
    def suggest(cls, trial: optuna.trial.BaseTrial) -> _NoConfig:
        return _NoConfig()


class BesselMean(nn.Module):
    """A valid pooling whose op (``torch.special.i0``) has no ONNX form: TorchScript takes it, ONNX cannot."""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        self.out_dim = in_dim

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return masked_mean(torch.special.i0(x.clamp(-3.0, 3.0)), mask)


class FrozenLengthMean(BesselMean):
    """A valid pooling that reads the longest length as a Python int: exact in PyTorch, but a trace freezes
    the example batch's length into the file."""

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        longest = int(mask.sum(dim=1).max())
        return masked_mean(x[:, :longest], mask[:, :longest])


class BesselPooling(_Pooling):
    name = "bessel"

    @classmethod
    def build(cls, config: Any, in_dim: int) -> BesselMean:
        return BesselMean(in_dim)


class FrozenLengthPooling(_Pooling):
    name = "frozen-length"

    @classmethod
    def build(cls, config: Any, in_dim: int) -> FrozenLengthMean:
        return FrozenLengthMean(in_dim)


def test_an_op_without_onnx_form_is_a_clear_error_and_writes_nothing(tmp_path: Path,
                                                                   capfd: pytest.CaptureFixture[str]) -> None:
    model = testing.export_model_of(BesselPooling)
    (tmp_path / "model.onnx").write_bytes(b"the previous export")
    with pytest.raises(ExportError) as caught:
        export_model(model, tmp_path, "torchscript,onnx", testing.IN_DIM["encoder"], what="pooling 'bessel'")
    message = str(caught.value)
    assert message.startswith("pooling 'bessel' cannot be exported to onnx:") and "aten::i0" in message
    assert "\n" not in message
    assert "Torch IR graph" not in capfd.readouterr().out  # torch's graph dump is kept off the terminal
    # nothing new, nothing half-written, the previous file intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert (tmp_path / "model.onnx").read_bytes() == b"the previous export"
    # the rest keeps working: TorchScript takes the same model, and the kit says which format failed
    export_model(model, tmp_path, "torchscript", testing.IN_DIM["encoder"])
    testing.check_export(BesselPooling, formats=["torchscript"])
    with pytest.raises(AssertionError, match=r"pooling 'bessel' \(with encoder 'transformer' \+ head 'softmax'\) "
                                             r"cannot be exported to onnx: UnsupportedOperatorError"):
        testing.check_export(BesselPooling)


def test_a_trace_that_freezes_data_fails_the_parity_check(tmp_path: Path) -> None:
    testing.check_masking_invariance(FrozenLengthPooling)  # a correct plugin in PyTorch
    with pytest.raises(AssertionError, match=r"pooling 'frozen-length' .*: the onnx export differs from PyTorch by "
                                             r"up to .* \(> 0.0001\)"):
        testing.check_plugin(FrozenLengthPooling, export=True, n_sampled=0)
    with pytest.raises(ExportError, match="the torchscript export differs from PyTorch"):
        export_model(testing.export_model_of(FrozenLengthPooling), tmp_path, "torchscript", testing.IN_DIM["encoder"])
    assert list(tmp_path.iterdir()) == []


def test_check_plugin_export_passes_a_builtin() -> None:
    registry = Registry()
    registry.load_builtins()
    testing.check_plugin(registry.get("pooling", "self-attention"), export=True, n_sampled=0)


def test_an_unknown_kind_of_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="cannot export a Linear"):
        export_model(nn.Linear(3, 2), tmp_path, "torchscript", 3)
    assert list(tmp_path.iterdir()) == []


# --- the CLI ---


def _synthetic(cli: CliRunner, where: Path) -> Path:
    code, _, stderr = run(cli, "data", "synth", where, "--speakers", 4, "--utterances", 6, "--seed", 2,
                          "--test-per-speaker", 2)
    assert code == 0, stderr
    return where


def test_cli_exports_a_run_directory(cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _synthetic(cli, tmp_path / "syn")
    out = tmp_path / "run"
    code, _, stderr = run(cli, "train", "--preset", "simple", "--data", data, "--steps", 4, "--valid-every", 2,
                          "--out", out, "--device", "cpu")
    assert code == 0, stderr
    before = sorted(p.name for p in out.iterdir())
    # a bad format, or a missing extra: one line, exit 2, nothing written
    code, _, stderr = run(cli, "export", "--model", out, "--format", "onnx,xyz")
    assert code == 2 and "unknown export format 'xyz'" in stderr and len(stderr.strip().splitlines()) == 1
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "onnxruntime", None)
        code, _, stderr = run(cli, "export", "--model", out, "--format", "torchscript", "--format", "onnx")
    assert code == 2 and "automel[onnx]" in stderr and len(stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == before
    # the real thing
    code, stdout, stderr = run(cli, "export", "--model", out, "--format", "onnx", "--format", "torchscript")
    assert code == 0, stderr
    assert "model.onnx" in stdout and "model.ts" in stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([*before, "model.onnx", "model.ts"])
    model, record = load_run(out)
    assert_parity(model, out, (90, 31, 64), record.n_mels)
    # elsewhere with --out; --model with --study is refused
    code, _, stderr = run(cli, "export", "--model", out, "--format", "ts", "--out", tmp_path / "deploy")
    assert code == 0, stderr
    assert [p.name for p in (tmp_path / "deploy").iterdir()] == ["model.ts"]
    code, _, stderr = run(cli, "export", "--model", out, "--study", "x", "--format", "onnx")
    assert code == 2 and "--model" in stderr


@pytest.mark.slow
def test_search_and_export_write_the_formats(cli: CliRunner, tmp_path: Path, isolated_home: Path) -> None:
    data = _synthetic(cli, tmp_path / "syn")
    args = ["search", "--data", data, "--trials", 1, "--steps-per-trial", 10, "--encoders", "transformer",
            "--poolings", "mean", "--heads", "am-softmax", "--device", "cpu", "--no-refit", "--quality", "fast",
            "--no-portfolio"]
    # a bad format fails before the search: no study is created
    code, _, stderr = run(cli, *args, "--formats", "onnx,xyz")
    assert code == 2 and "unknown export format 'xyz'" in stderr
    assert not list(isolated_home.glob("*.db"))
    code, _, stderr = run(cli, *args, "--formats", "onnx,torchscript")
    assert code == 0, stderr
    (study_db,) = isolated_home.glob("*.db")
    best = isolated_home / study_db.stem / "best"
    assert {"model.safetensors", "config.json", "model.onnx", "model.ts"} <= {p.name for p in best.iterdir()}
    assert not [p for p in best.parent.iterdir() if p.name.startswith(".automel-export.")]
    model, record = load_run(best)
    assert_parity(model, best, (70, 13, 41), record.n_mels)
    # `automel export --format` of the study's trial, into another folder
    out = tmp_path / "exported"
    code, _, stderr = run(cli, "export", "--study", study_db.stem, "--format", "torchscript", "--out", out)
    assert code == 0, stderr
    assert {"model.safetensors", "config.json", "model.ts"} <= {p.name for p in out.iterdir()}
    assert "model.onnx" not in {p.name for p in out.iterdir()}
    scripted = torch.jit.load(str(out / "model.ts"))
    x, mask = padded((25, 60), record.n_mels)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x, mask)[0], model(x, mask), atol=PARITY_TOLERANCE, rtol=0)
    assert json.loads((out / "config.json").read_text())["params"]["head"] == "am-softmax"


def test_formats_table_names_the_files() -> None:
    assert FORMATS == {"onnx": "model.onnx", "torchscript": "model.ts"}
