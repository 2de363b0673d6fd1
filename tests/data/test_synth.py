"""The synthetic corpus: CLI, layout, determinism, the cached default corpus, and spec validation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from automel.data import synth
from automel.data.layout import read_dataset
from automel.data.synth import SynthSpec, default_corpus, generate_corpus
from automel.errors import ConfigError, DataError
from tests.conftest import run

TINY = SynthSpec(speakers=3, utterances=3, seed=5, test_per_speaker=1)


def _tensors(root: Path) -> dict[str, torch.Tensor]:
    return {p.name: torch.load(p, weights_only=True) for p in sorted(root.glob("uttr-*.pt"))}


def _same_corpus(a: Path, b: Path) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta) and all(
        (a / name).read_bytes() == (b / name).read_bytes()
        for name in ("metadata.json", "mapping.json", "testdata.json", "answers.csv")
    )


def test_cli_synth_writes_a_valid_corpus(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "syn"
    code, stdout, stderr = run(cli, "data", "synth", out, "--speakers", "6", "--utterances", "6", "--seed", "3")
    assert code == 0, stderr
    assert "wrote" in stdout

    ds = read_dataset(out)
    assert ds.kind == "synthetic"
    assert ds.name == "synthetic-" + SynthSpec(6, 6, 3).key()
    assert ds.speakers == tuple(f"syn{i:04d}" for i in range(6))
    assert len(ds.train) == 6 * 2 and len(ds.test) == 6 * 4
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["automel"]["spec"] == {"speakers": 6, "utterances": 6, "seed": 3, "test_per_speaker": 4}
    assert meta["automel"]["features"]["frontend"] == "kaldi-native-fbank"

    with (out / "answers.csv").open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["Id", "Category"] and len(rows) - 1 == 6 * 4
    assert {r[0] for r in rows[1:]} == {u.feature_path for u in ds.test}
    assert all(sum(r[1] == s for r in rows[1:]) == 4 for s in ds.speakers)  # 4 held out per speaker

    for utt in ds.train + ds.test:
        feats = torch.load(out / utt.feature_path, weights_only=True)
        assert feats.dtype == torch.float32 and feats.shape == (utt.mel_len, 40)
        assert torch.isfinite(feats).all()
        assert 190 <= utt.mel_len <= 400  # 2-4 s at a 10 ms hop

    code, stdout, stderr = run(cli, "data", "check", out)
    assert code == 0, stderr
    assert "synthetic" in stdout


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate_corpus(tmp_path / "a", TINY, jobs=1)
    b = generate_corpus(tmp_path / "b", TINY, jobs=2)  # worker processes: same result
    c = generate_corpus(tmp_path / "c", SynthSpec(speakers=3, utterances=3, seed=6, test_per_speaker=1), jobs=1)
    assert _same_corpus(a, b)
    ta, tc = _tensors(a), _tensors(c)
    assert ta.keys() == tc.keys()  # file names come from speaker/utterance names, not the seed
    assert not any(ta[k].shape == tc[k].shape and torch.equal(ta[k], tc[k]) for k in ta)


def test_speakers_have_distinct_voices() -> None:
    """Each speaker's utterances are seeded apart, and the voices differ: not one voice for everyone."""
    first = synth.synthesise_speaker(0, 0, 2)
    second = synth.synthesise_speaker(0, 1, 2)
    again = synth.synthesise_speaker(0, 0, 2)
    assert all(np.array_equal(x, y) for x, y in zip(first, again, strict=True))
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first[0][:100], second[0][:100])


def test_progress_reports_every_speaker(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    generate_corpus(tmp_path / "p", TINY, on_progress=lambda d, t: calls.append((d, t)), jobs=1)
    assert calls[0] == (0, 9) and calls[-1] == (9, 9)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_non_empty_out_is_refused_untouched(cli: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code, _, stderr = run(cli, "data", "synth", out, "--speakers", "2", "--utterances", "2",
                          "--test-per-speaker", "1")
    assert code == 2
    message = stderr.strip()
    assert "\n" not in message and "taken" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # no temporary folder left behind
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and (out / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"speakers": 1}, "speakers"),
        ({"utterances": 1, "test_per_speaker": 0}, "utterances"),
        ({"utterances": 4, "test_per_speaker": 4}, "test_per_speaker"),
        ({"test_per_speaker": -1}, "test_per_speaker"),
        ({"seed": -1}, "seed"),
    ],
)
def test_invalid_spec_is_a_config_error(kwargs: dict[str, int], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        SynthSpec(**kwargs)


def test_cli_rejects_an_invalid_spec(cli: CliRunner, tmp_path: Path) -> None:
    code, _, stderr = run(cli, "data", "synth", tmp_path / "x", "--utterances", "3", "--test-per-speaker", "3")
    assert code == 2
    assert "test_per_speaker" in stderr
    assert not (tmp_path / "x").exists()


def test_spec_key_is_short_and_stable() -> None:
    assert SynthSpec().key() == f"v{synth.GENERATOR_VERSION}-64x40-t4-s0"
    assert SynthSpec(6, 6, 3, 2).key() == f"v{synth.GENERATOR_VERSION}-6x6-t2-s3"


class _CountingGenerate:
    def __init__(self) -> None:
        self.calls = 0
        self.real = synth.generate_corpus

    def __call__(self, out: Path, spec: SynthSpec, **kwargs: object) -> Path:
        self.calls += 1
        return self.real(out, spec, jobs=1)


def test_default_corpus_is_generated_once_and_repaired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = _CountingGenerate()
    monkeypatch.setattr(synth, "generate_corpus", counting)
    first = default_corpus(tmp_path, TINY)
    assert first == tmp_path / "synthetic" / TINY.key()
    assert read_dataset(first).kind == "synthetic"
    before = _tensors(first)
    assert default_corpus(tmp_path, TINY) == first
    assert counting.calls == 1  # reused, not regenerated

    (first / "metadata.json").unlink()  # an incomplete corpus is removed and generated again
    assert default_corpus(tmp_path, TINY) == first
    assert counting.calls == 2
    assert read_dataset(first).kind == "synthetic"
    after = _tensors(first)
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)

    next(first.glob("uttr-*.pt")).unlink()  # a missing feature file counts as incomplete too
    default_corpus(tmp_path, TINY)
    assert counting.calls == 3

    meta = json.loads((first / "metadata.json").read_text())  # a different spec in the folder: regenerate
    meta["automel"]["spec"]["seed"] = 99
    (first / "metadata.json").write_text(json.dumps(meta))
    default_corpus(tmp_path, TINY)
    assert counting.calls == 4
    assert json.loads((first / "metadata.json").read_text())["automel"]["spec"]["seed"] == TINY.seed


def test_default_corpus_defaults_to_the_embedded_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[SynthSpec] = []

    def fake(out: Path, spec: SynthSpec, **kwargs: object) -> Path:
        seen.append(spec)
        return Path(out)

    monkeypatch.setattr(synth, "generate_corpus", fake)
    assert default_corpus(tmp_path) == tmp_path / "synthetic" / SynthSpec().key()
    assert seen == [SynthSpec()]


def test_default_corpus_uses_the_winner_of_a_race(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process finishes first: our rename (or writer) fails, and its corpus is used."""
    real = synth.generate_corpus

    def lose_the_race(out: Path, spec: SynthSpec, **kwargs: object) -> Path:
        real(out, spec, jobs=1)  # the other process wins...
        return real(out, spec, jobs=1)  # ...so ours finds the folder taken

    monkeypatch.setattr(synth, "generate_corpus", lose_the_race)
    path = default_corpus(tmp_path, TINY)
    assert read_dataset(path).kind == "synthetic"
    assert sorted(p.name for p in path.parent.iterdir()) == [TINY.key()]  # no temporary folders left


def test_default_corpus_reraises_when_nobody_won(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(out: Path, spec: SynthSpec, **kwargs: object) -> Path:
        raise DataError(f"{out}: disk full")

    monkeypatch.setattr(synth, "generate_corpus", broken)
    with pytest.raises(DataError, match="disk full"):
        default_corpus(tmp_path, TINY)
