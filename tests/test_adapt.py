"""Adaptation to unlabelled target data: feature statistics and AdaBN, in the library and through ``predict``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from automel.adapt import MIN_UTTERANCES, adapt_model, check_adapt, describe, recorded_mode, target_stats
from automel.errors import ConfigError
from automel.normalize import FeatureNorm
from automel.score import score_submission
from tests.conftest import run

TDNN = {"encoder": "tdnn", "encoder.tdnn.channels": 64, "encoder.tdnn.out_channels": 128, "pooling": "attentive-stats",
        "head": "am-softmax", "train.normalize": "global", "train.batch_size": 16, "train.segment_len": 96,
        "train.lr": 3e-3, "train.warmup": 0.05}


class NormBatchNorm(nn.Module):
    def __init__(self, n_mels: int = 4) -> None:
        super().__init__()
        self.norm = FeatureNorm(n_mels, "global")
        self.bn = nn.BatchNorm1d(n_mels)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm(x, mask)
        weight = mask.unsqueeze(-1).float()
        return self.bn((h * weight).sum(1) / weight.sum(1))


def _target(utterances: int, offset: float) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(utterances, 30, 4, generator=generator) * 3 + offset
    mask = torch.ones(utterances, 30, dtype=torch.bool)
    mask[0, 20:] = False
    x[0, 20:] = 1e6  # padded frames hold anything: they must not count
    return [(x[i : i + 4], mask[i : i + 4]) for i in range(0, utterances, 4)]


def test_adaptation_takes_feature_and_batchnorm_statistics_from_the_target() -> None:
    model = NormBatchNorm()
    batches = _target(16, offset=7.0)
    info = adapt_model(model, lambda: iter(batches), 16, "test", "16 shifted utterances")
    assert info.changed and info.feature_norm == 1 and info.batchnorm == 1
    real = torch.cat([x[m] for x, m in batches])
    assert torch.allclose(model.norm.mean, real.mean(0), atol=1e-4)
    assert torch.allclose(model.norm.std, real.std(0, unbiased=False), atol=1e-4)
    # after adaptation the normalised target is centred, so the BatchNorm statistics are near zero mean
    assert model.bn.running_mean.abs().max() < 0.5
    assert json.loads(json.dumps(info.to_json()))["data"] == "16 shifted utterances"


def test_too_few_utterances_or_nothing_to_adapt_leave_the_model_alone() -> None:
    model = NormBatchNorm()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    few = adapt_model(model, lambda: iter(_target(4, 7.0)), MIN_UTTERANCES - 1, "test", "a few")
    assert not few.changed and "too few" in (few.skipped or "")
    none = adapt_model(model, lambda: iter([]), 0, "test", "the 0 test utterances of D")
    assert describe(none) == "no adaptation to the 0 test utterances of D: there are none (at least 8 are needed)"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    plain = adapt_model(nn.Linear(4, 4), lambda: iter(_target(16, 0.0)), 16, "test", "x")
    assert not plain.changed and plain.skipped == "the model has no statistics to adapt"
    with pytest.raises(ValueError, match="no frames"):
        target_stats(iter([]))


def test_adapt_values_are_checked_before_any_work(tmp_path: Path) -> None:
    assert check_adapt("test") == "test" and check_adapt("auto", auto=True) == "auto"
    assert check_adapt(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ConfigError, match="'tset' is neither none, test nor an existing folder"):
        check_adapt("tset")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        check_adapt(str(tmp_path / "file"))
    assert recorded_mode({"adaptation": {"mode": "test"}}) == "test"
    assert recorded_mode({"adaptation": {"mode": "folder"}}) == "none" == recorded_mode({})


def _shifted_copy(source: Path, out: Path) -> Path:
    """The data set with every *test* utterance through another channel: a gain and a steep spectral tilt."""
    shutil.copytree(source, out)
    tilt = torch.linspace(-3.0, 3.0, 40) + 1.5  # natural-log offsets: about -13..+13 dB of colouring
    for entry in json.loads((out / "testdata.json").read_text())["utterances"]:
        path = out / entry["feature_path"]
        torch.save(torch.load(path, weights_only=True) + tilt, path)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import HW4_SAMPLE, need

    root = tmp_path_factory.mktemp("adapt")
    config = root / "tdnn.json"
    config.write_text(json.dumps(TDNN))
    code, _, stderr = run(CliRunner(), "train", "--config", config, "--data", need(HW4_SAMPLE), "--steps", 150,
                          "--valid-every", 150, "--out", root / "run", "--device", "cpu", "--home", root / "home")
    assert code == 0, stderr
    return root / "run"


def test_predict_adapts_to_a_shifted_test_set_and_says_so(cli: CliRunner, trained: Path, hw4_sample: Path,
                                                          hw4_answers: Path, tmp_path: Path) -> None:
    shifted = _shifted_copy(hw4_sample, tmp_path / "shifted")
    scores = {}
    for mode in ("none", "test"):
        out = tmp_path / f"{mode}.csv"
        code, _, stderr = run(cli, "predict", trained, "--data", shifted, "--adapt", mode, "--out", out,
                              "--device", "cpu")
        assert code == 0, stderr
        scores[mode] = score_submission(out, hw4_answers).accuracy
        if mode == "test":
            assert "adapted feature statistics and 6 BatchNorm layers' statistics to the 48 test utterances" in stderr
    assert scores["test"] >= scores["none"] + 0.1, scores
    # auto: a run that was not exported with adaptation predicts as it is (its own output.csv again)
    code, _, _ = run(cli, "predict", trained, "--data", hw4_sample, "--out", tmp_path / "auto.csv", "--device", "cpu")
    assert code == 0 and (tmp_path / "auto.csv").read_text() == (trained / "output.csv").read_text()


def test_predict_adapts_to_a_folder_of_unlabelled_data(cli: CliRunner, trained: Path, hw4_sample: Path,
                                                       hw4_answers: Path, tmp_path: Path) -> None:
    shifted = _shifted_copy(hw4_sample, tmp_path / "shifted")
    out = tmp_path / "folder.csv"
    code, _, stderr = run(cli, "predict", trained, "--data", shifted, "--adapt", shifted, "--out", out,
                          "--device", "cpu")
    assert code == 0, stderr
    assert f"to {shifted} (251 utterances, labels unused)" in stderr
    assert score_submission(out, hw4_answers).accuracy > 0.5


def test_predict_refuses_a_bad_adapt_value_in_one_line(cli: CliRunner, trained: Path, hw4_sample: Path,
                                                       tmp_path: Path) -> None:
    code, _, stderr = run(cli, "predict", trained, "--data", hw4_sample, "--adapt", "tset",
                          "--out", tmp_path / "o.csv")
    assert code == 2 and "--adapt 'tset'" in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.csv").exists()
