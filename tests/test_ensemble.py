"""Greedy ensemble selection, EnsembleModel, the ensemble folder format, and predict/score on one."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from automel.ensemble import EnsembleModel, greedy_ensemble, predict_proba
from automel.errors import ConfigError
from automel.model import build_model
from automel.model_config import ModelConfig
from automel.model_folder import load_run, read_config, write_ensemble_dir
from automel.presets import preset_params
from automel.train.fit import full_params, open_workspace
from automel.train.loop import evaluate
from tests.conftest import run

N_MELS, SPEAKERS = 8, ("a", "b", "c")


def _onehot(labels: list[int], classes: int = 3, sharp: float = 0.9) -> np.ndarray:
    probs = np.full((len(labels), classes), (1 - sharp) / (classes - 1))
    probs[np.arange(len(labels)), labels] = sharp
    return probs


def test_greedy_perfect_model_gets_all_weight() -> None:
    labels = np.array([0, 1, 2, 0, 1])
    perfect = _onehot(labels.tolist(), sharp=1.0)
    noisy = _onehot([1, 1, 2, 2, 0])
    choice = greedy_ensemble([noisy, perfect, np.full((5, 3), 1 / 3)], labels)
    assert choice.weights.tolist() == [0.0, 1.0, 0.0] and choice.members == [1]
    assert choice.valid_acc == choice.best_single_acc == 1.0 and choice.best_single_index == 1
    assert choice.valid_loss == pytest.approx(0.0, abs=1e-9)


def test_greedy_picks_the_complementary_pair() -> None:
    # A is right on the first half and confidently wrong on the second, B the reverse; C, the best single
    # model by log-loss, is right on 5 of 6 but never confident. A + B are confidently right everywhere.
    labels = np.array([0, 1, 2, 0, 1, 2])
    a = np.vstack([_onehot([0, 1, 2], sharp=0.95), _onehot([1, 2, 0], sharp=0.8)])
    b = np.vstack([_onehot([1, 2, 0], sharp=0.8), _onehot([0, 1, 2], sharp=0.95)])
    c = _onehot([0, 1, 0, 0, 1, 2], sharp=0.5)
    probas = [c, a, b]
    choice = greedy_ensemble(probas, labels)
    assert choice.weights.sum() == pytest.approx(1.0) and (choice.weights >= 0).all()
    assert choice.weights[1] > 0.3 and choice.weights[2] > 0.3 and choice.weights[0] < 0.2
    assert choice.valid_acc == 1.0 and choice.valid_loss < choice.best_single_loss
    mixed = sum(w * p for w, p in zip(choice.weights, probas, strict=True))
    assert choice.valid_loss == pytest.approx(-np.log(mixed[np.arange(6), labels]).mean())
    again = greedy_ensemble([p.copy() for p in probas], labels.copy())  # deterministic
    assert again.weights.tolist() == choice.weights.tolist() and again.valid_loss == choice.valid_loss
    assert choice.best_single_index == 0  # round 1 took C, the later rounds diluted it
    assert greedy_ensemble(probas, labels, max_rounds=1).weights.tolist() == [1.0, 0.0, 0.0]


def test_greedy_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no candidates"):
        greedy_ensemble([], np.array([0]))
    with pytest.raises(ValueError, match="labels"):
        greedy_ensemble([_onehot([0, 1])], np.array([0, 3]))
    with pytest.raises(ValueError, match="finite"):
        greedy_ensemble([np.full((2, 3), np.nan)], np.array([0, 1]))


def _member(seed: int) -> tuple[torch.nn.Module, ModelConfig]:
    params = full_params({**preset_params("simple"), "encoder.transformer.d_model": 16,
                          "head.softmax.hidden": 16})
    torch.manual_seed(seed)
    model = build_model(params, N_MELS, len(SPEAKERS)).eval()
    return model, ModelConfig(params, N_MELS, SPEAKERS, {"name": f"set-{seed}"}, {"valid_acc": 0.5}, {})


def _batch(lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.arange(max(lengths)).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    return torch.randn(len(lengths), max(lengths), N_MELS, generator=torch.Generator().manual_seed(1)), mask


@torch.no_grad()
def test_ensemble_model_is_log_of_weighted_mean_and_ignores_padding() -> None:
    (m1, _), (m2, _), (m3, _) = _member(1), _member(2), _member(3)
    ensemble = EnsembleModel([m1, m2, m3], [0.25, 0.75, 0.0]).eval()
    x, mask = _batch([12, 7, 3])
    expected = (0.25 * m1(x, mask).softmax(-1) + 0.75 * m2(x, mask).softmax(-1)).log()
    out = ensemble(x, mask)
    assert out.shape == (3, len(SPEAKERS)) and torch.allclose(out, expected, atol=1e-6)
    assert torch.allclose(out.exp().sum(-1), torch.ones(3), atol=1e-6)
    alone = ensemble(x[1:2, :7], mask[1:2, :7])  # the same utterance without padding
    assert torch.allclose(out[1:2], alone, atol=1e-5)
    with pytest.raises(ConfigError, match="sum"):
        EnsembleModel([m1, m2], [0.5, 0.6])


def test_round_trip_and_bad_folders(tmp_path: Path) -> None:
    members = [_member(seed) for seed in (1, 2, 3)]
    out = write_ensemble_dir(tmp_path / "ens", [(m.state_dict(), r, {"trial": k}) for k, (m, r) in enumerate(members)],
                             [0.5, 0.0, 0.5], [("u.pt", "a")], card="# card\n", extra={"notes.txt": "hi"},
                             result={"valid_acc": 0.9})
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "ensemble.json", "member-0", "member-1",
                                                     "notes.txt", "output.csv"]
    manifest = json.loads((out / "ensemble.json").read_text())
    assert [(m["dir"], m["weight"], m["trial"]) for m in manifest["members"]] == [
        ("member-0", 0.5, 0), ("member-1", 0.5, 2)]
    model, record = load_run(out)
    assert isinstance(model, EnsembleModel) and not model.training
    assert record.speakers == SPEAKERS and record.n_mels == N_MELS and record.dataset == {"name": "set-1"}
    assert record.result == {"valid_acc": 0.9} and record == read_config(out)
    assert [m["trial"] for m in record.extra["ensemble"]["members"]] == [0, 2]
    x, mask = _batch([9, 4])
    with torch.no_grad():
        direct = EnsembleModel([members[0][0], members[2][0]], [0.5, 0.5])(x, mask)
        assert torch.allclose(model(x, mask), direct, atol=1e-6)
    # never half-overwritten: refused without replace, swapped whole with it
    with pytest.raises(ConfigError, match="already exists"):
        write_ensemble_dir(out, [(members[0][0].state_dict(), members[0][1], {})], [1.0])
    write_ensemble_dir(out, [(members[0][0].state_dict(), members[0][1], {})], [1.0], replace=True)
    assert sorted(p.name for p in out.iterdir()) == ["ensemble.json", "member-0"]
    assert [p.name for p in tmp_path.iterdir()] == ["ens"]

    def broken(name: str, edit: Callable[[dict[str, Any], Path], object]) -> Path:
        copy = tmp_path / name
        shutil.copytree(out, copy)
        data = json.loads((copy / "ensemble.json").read_text())
        edit(data, copy)
        (copy / "ensemble.json").write_text(json.dumps(data))
        return copy

    other = ModelConfig(members[0][1].params, N_MELS, ("a", "b", "z"), {}, {}, {})
    cases: dict[str, Callable[[dict[str, Any], Path], object]] = {
        "format": lambda d, _: d.update(format="automel-ensemble/9"),
        "negative": lambda d, _: d["members"][0].update(weight=-1.0),
        "sum": lambda d, _: d["members"][0].update(weight=0.5),
        "nan": lambda d, _: d["members"][0].update(weight=float("nan")),
        "escape": lambda d, _: d["members"][0].update(dir="../ens"),
        "missing": lambda d, c: shutil.rmtree(c / "member-0"),
        "speakers": lambda d, c: (c / "member-0" / "config.json").write_text(json.dumps(other.to_json())),
    }
    for name, edit in cases.items():
        with pytest.raises(ConfigError, match=r"ensemble\.json") as info:
            load_run(broken(name, edit))
        assert "\n" not in str(info.value), name
    with pytest.raises(ConfigError, match="disagree"):
        write_ensemble_dir(tmp_path / "mixed", [(members[0][0].state_dict(), members[0][1], {}),
                                                (members[1][0].state_dict(), other, {})], [0.5, 0.5])
    assert not (tmp_path / "mixed").exists()


def test_predict_and_score_an_ensemble(cli: CliRunner, hw4_sample: Path, hw4_answers: Path, tmp_path: Path,
                                       isolated_home: Path) -> None:
    overrides = tmp_path / "lr.json"
    overrides.write_text(json.dumps({"train.lr": 3e-3}))
    runs = []
    for k, extra in enumerate([[], ["--config", overrides]]):
        runs.append(tmp_path / f"run-{k}")
        code, _, stderr = run(cli, "train", "--preset", "simple", *extra, "--data", hw4_sample, "--steps", 40,
                              "--valid-every", 20, "--device", "cpu", "--out", runs[-1])
        assert code == 0, stderr
    loaded = [load_run(r) for r in runs]
    work = open_workspace(hw4_sample, isolated_home, split_record=loaded[0][1].extra["split"])
    cpu = torch.device("cpu")
    probas = [predict_proba(m, work.store, work.split.valid, cpu) for m, _ in loaded]
    assert probas[0].shape == (len(work.split.valid), 10) and probas[0].dtype == np.float32
    labels = work.store.labels.numpy()[work.split.valid]
    choice = greedy_ensemble(probas, labels)
    assert choice.valid_loss <= choice.best_single_loss
    ens = write_ensemble_dir(tmp_path / "ens", [(m.state_dict(), r, {"run": str(p)})
                                                for (m, r), p in zip(loaded, runs, strict=True)],
                             choice.weights, result={"valid_acc": choice.valid_acc})
    model, _ = load_run(ens)
    acc, loss = evaluate(model, work.store, work.split.valid, cpu)  # evaluate takes the ensemble as is
    assert acc == pytest.approx(choice.valid_acc) and loss == pytest.approx(choice.valid_loss, abs=1e-4)

    submission = tmp_path / "output.csv"
    code, _, stderr = run(cli, "predict", ens, "--data", hw4_sample, "--out", submission, "--device", "cpu")
    assert code == 0, stderr
    code, stdout, _ = run(cli, "score", submission, hw4_answers)
    assert code == 0 and "accuracy" in stdout
    assert float(stdout.split()[1]) >= 0.1  # chance level with 10 speakers
    # the CLI's predictions are the argmax of the weighted member probabilities
    test = work.store.test_indices()
    mixed = sum(w * predict_proba(m, work.store, test, cpu) for w, (m, _) in zip(choice.weights, loaded,
                                                                                   strict=True))
    rows = [line.split(",")[1] for line in submission.read_text().splitlines()[1:]]
    assert rows == [work.store.dataset.speakers[k] for k in np.argmax(mixed, axis=1)]

    missing, corrupt = tmp_path / "missing", tmp_path / "corrupt"
    shutil.copytree(ens, missing)
    shutil.rmtree(missing / "member-0")
    shutil.copytree(ens, corrupt)
    (corrupt / "ensemble.json").write_text("{not json")
    for bad in (missing, corrupt):
        code, _, stderr = run(cli, "predict", bad, "--data", hw4_sample, "--out", tmp_path / "x.csv",
                              "--device", "cpu")
        assert code == 2 and len(stderr.strip().splitlines()) == 1
        assert str(bad / "ensemble.json") in stderr
    assert not (tmp_path / "x.csv").exists()
