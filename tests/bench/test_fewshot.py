"""bench/fewshot.py: a tiny few-shot set with shifted test variants, built from the real data in ../shared."""

from __future__ import annotations

import csv
import importlib
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from tests.conftest import SHARED_DATA, need

BENCH = Path(__file__).resolve().parents[2] / "bench"
VARIANTS = ["clean", "noise-5-10", "telephone"]


def load_fewshot() -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the bench scripts import each other as top-level modules
    return importlib.import_module("fewshot")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[ModuleType, Path, Path]:
    need(SHARED_DATA / "speechocean762")
    need(SHARED_DATA / "hu-nonspeech")
    fewshot = load_fewshot()
    out, audio = tmp_path_factory.mktemp("fewshot"), tmp_path_factory.mktemp("audio")
    fewshot.build(out, fewshot.Params(seed=0, speakers=4), VARIANTS, keep_audio=audio, log=lambda line: None)
    return fewshot, out, audio


def _manifest(audio: Path, variant: str) -> list[dict[str, str]]:
    with (audio / variant / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_few_shot_counts(built: tuple[ModuleType, Path, Path]) -> None:
    _, out, _ = built
    metadata = json.loads((out / "clean" / "metadata.json").read_text())
    assert len(metadata["speakers"]) == 4
    assert all(2 <= len(utterances) <= 3 for utterances in metadata["speakers"].values())
    answers = list(csv.DictReader((out / "clean" / "answers.csv").read_text(encoding="utf-8").splitlines()))
    per_speaker = {s: sum(a["Category"] == s for a in answers) for s in metadata["speakers"]}
    assert all(1 <= n <= 2 for n in per_speaker.values())
    info = json.loads((out / "fewshot.json").read_text())
    assert info["params"]["speakers"] == 4 and set(info["variants"]) == set(VARIANTS)


def test_variants_share_training_features_and_test_names(built: tuple[ModuleType, Path, Path]) -> None:
    _, out, _ = built
    clean = out / "clean"
    metadata = json.loads((clean / "metadata.json").read_text())
    train_files = [u["feature_path"] for utterances in metadata["speakers"].values() for u in utterances]
    test_files = [u["feature_path"] for u in json.loads((clean / "testdata.json").read_text())["utterances"]]
    for variant in VARIANTS[1:]:
        other = out / variant
        assert json.loads((other / "metadata.json").read_text())["speakers"] == metadata["speakers"]
        assert (other / "mapping.json").read_bytes() == (clean / "mapping.json").read_bytes()
        assert (other / "answers.csv").read_bytes() == (clean / "answers.csv").read_bytes()
        assert (other / "testdata.json").read_bytes() == (clean / "testdata.json").read_bytes()
        for name in train_files:
            assert (other / name).read_bytes() == (clean / name).read_bytes(), f"{variant}/{name}"
        assert any((other / name).read_bytes() != (clean / name).read_bytes() for name in test_files)


def test_no_recording_on_both_sides(built: tuple[ModuleType, Path, Path]) -> None:
    _, _, audio = built
    rows = _manifest(audio, "clean")
    recording = {r["path"]: r["path"].rsplit("-c", 1)[0] for r in rows}  # SPEAKER/<utterance>-cK.wav
    train = {recording[r["path"]] for r in rows if r["split"] == "train"}
    test = {recording[r["path"]] for r in rows if r["split"] == "test"}
    assert train and test and not train & test
    assert len(recording.values()) == len(set(recording.values()))  # one chunk per recording


def test_noise_snr_lands_in_its_band(built: tuple[ModuleType, Path, Path]) -> None:
    import soundfile as sf

    fewshot, out, audio = built
    tested = [r["path"] for r in _manifest(audio, "clean") if r["split"] == "test"]
    assert tested
    for key in tested:
        clean, rate = sf.read(str(audio / "clean" / key), dtype="float64")
        noisy, _ = sf.read(str(audio / "noise-5-10" / key), dtype="float64")
        assert rate == 16_000 and clean.shape == noisy.shape
        assert 5.0 - 0.01 <= fewshot.achieved_snr(clean, noisy) < 10.0 + 0.01, key
    draws = [json.loads(line) for line in (out / "draws" / "noise-5-10.jsonl").read_text().splitlines()]
    assert sorted(d["key"] for d in draws) == sorted(tested)
    assert all(5.0 <= d["snr_db"] < 10.0 for d in draws)


def test_rebuild_reuses_and_other_parameters_are_refused(built: tuple[ModuleType, Path, Path]) -> None:
    fewshot, out, _ = built
    before = (out / "clean" / "answers.csv").stat().st_mtime_ns
    fewshot.build(out, fewshot.Params(seed=0, speakers=4), VARIANTS, log=lambda line: None)
    assert (out / "clean" / "answers.csv").stat().st_mtime_ns == before
    with pytest.raises(fewshot.FewshotError, match="other parameters"):
        fewshot.build(out, fewshot.Params(seed=1, speakers=4), VARIANTS, log=lambda line: None)


def test_mix_at_snr_and_telephone_band() -> None:
    fewshot = load_fewshot()
    rng = np.random.default_rng(0)
    t = np.arange(32_000) / 16_000
    speech = 0.1 * np.sin(2 * np.pi * 220 * t) * (t > 0.5)  # a second of silence first
    mixed = fewshot.mix_at_snr(speech, rng.standard_normal(len(t)), 7.5)
    assert abs(fewshot.achieved_snr(speech, mixed) - 7.5) < 1e-6
    tone = 0.1 * np.sin(2 * np.pi * 6000 * t)  # above the phone band: gone
    phone, _ = fewshot.telephone(tone, rng)
    assert np.sqrt(np.mean(phone[4000:-4000] ** 2)) < 0.01 * np.sqrt(np.mean(tone**2))
