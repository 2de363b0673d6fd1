"""Few-shot speakers with shifted test channels: speechocean762 as HW4-layout sets, one per test variant.

    .venv/bin/python bench/fewshot.py OUT_DIR [--speakers N] [--train-chunks 2-3] [--test-chunks 1-2]
        [--seed 0] [--variants all|clean,channel,...] [--keep-audio DIR]

``reverb`` needs pyroomacoustics: ``pip install -e '.[bench]'`` (the ``bench`` extra); every other variant
needs only numpy, scipy, soundfile and soxr.

Source: ``../shared/data/speechocean762`` (250 speakers x 8 FLAC recordings, 16 kHz, 2-20 s, listed in
``utterances.tsv``). A speaker qualifies when it has at least ``max(train) + max(test)`` recordings of
2 s or more; ``--speakers N`` takes N of them (a seeded permutation, so a smaller N is a subset of a
larger one), by default all. Every recording is cut, as :mod:`realspeech` does, into consecutive chunks
of random length 2-4 s (the tail kept when 2-4 s). Per speaker (its own seeded stream, so a speaker's
chunks do not depend on which other speakers are in): draw ``T`` test chunks (1-2) and ``K`` training
chunks (2-3), shuffle the recordings, give the first ``T`` to the test side and the next ``K`` to the
training side, and take one random chunk of each. Whole recordings are on one side (a test chunk never
shares a recording with a training chunk) and no two chunks share a recording; the other recordings are
not used: the training side is few-shot.

``OUT_DIR/clean`` is written by :func:`automel.data.prepare.prepare_dataset` from a
``path,speaker,split`` manifest; every other variant ``OUT_DIR/<variant>`` from the same manifest keys
(hence the same ``uttr-*.pt`` names, ``testdata.json`` and ``answers.csv``), the same training audio
(so byte-identical training features) and its own version of each test chunk, made in the audio domain
(never with automel's augmentation code), from a seed per variant and chunk:

- ``channel``: low shelf (80-400 Hz), high shelf (1.5-5 kHz) and 1-2 peaks (300 Hz-3 kHz, Q 0.7-2) of
  +-6 dB each (RBJ biquads), a spectral tilt of +-1.5 dB/octave around 1 kHz, a gain of +-6 dB, and
  white, pink or brown noise at 15-30 dB SNR;
- ``noise-LO-HI`` (``noise-0-5``, ``noise-5-10``, ``noise-10-15``, ``noise-15-20``; any ``LO<HI`` works):
  one of the 98 distinct real clips of ``../shared/data/hu-nonspeech`` (20 kHz, resampled to 16 kHz
  with soxr; duplicates flagged in its ``manifest.tsv`` left out), from a random offset, looped or
  cropped to the chunk, mixed at an SNR drawn uniformly in ``[LO, HI)`` dB;
- ``reverb``: a random shoebox room (4-10 x 3-8 x 2.5-4 m) with RT60 0.2-0.8 s (absorption and image
  order by inverse Sabine, pyroomacoustics' image source model), source and microphone at least 0.5 m
  from the walls and 1 m apart; the chunk is convolved with the room impulse response, cut at the direct
  path and scaled back to its own RMS;
- ``telephone``: a 4th-order Butterworth band-pass 300-3,400 Hz, resampled to 8 kHz, 8-bit mu-law
  (G.711) and back to 16 kHz.

SNR, here and in :func:`achieved_snr`, is the speech's *active* power (20 ms frames above
``max(loudest - 30 dB, 10th percentile + 15 dB)``: a plain energy VAD) over the noise's mean power.
Shifted chunks are stored as float WAV (no clipping).

``OUT_DIR/fewshot.json`` records the parameters and counts; ``OUT_DIR/draws/<variant>.jsonl`` what was
drawn for each test chunk (``id`` is its ``uttr-*.pt``). Sets already in OUT_DIR are kept and only the
missing variants are built; OUT_DIR built with other parameters is refused. ``--keep-audio DIR`` also
keeps every set's WAV chunks (``DIR/<variant>/<speaker>/<recording>-cK.wav``). Prints one JSON line per
set. Exits 2 with one line on a problem (``../shared`` absent, other parameters, pyroomacoustics absent).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from realspeech import CHUNK_S, RATE, Chunk, _biquad, _is_dataset, _lfilter, cut

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SOURCE = SHARED / "data" / "speechocean762"
NOISE = SHARED / "data" / "hu-nonspeech"
INFO = "fewshot.json"
RECIPE = 1  # bump when a change would give other sets for the same parameters
CLEAN = "clean"
NOISE_BANDS = ((0, 5), (5, 10), (10, 15), (15, 20))
VARIANTS = (CLEAN, "channel", *(f"noise-{lo}-{hi}" for lo, hi in NOISE_BANDS), "reverb", "telephone")
_NOISE_NAME = re.compile(r"^noise-(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$")
FRAME = RATE // 50  # 20 ms: the frames of the energy VAD


class FewshotError(Exception):
    """A problem to report in one line (the CLI exits 2)."""


@dataclass(frozen=True)
class Params:
    """What decides the sets (the variants do not: each is built from the same plan)."""

    seed: int = 0
    speakers: int | None = None  # None: every qualifying speaker
    train_chunks: tuple[int, int] = (2, 3)
    test_chunks: tuple[int, int] = (1, 2)

    def to_json(self) -> dict[str, Any]:
        return {"recipe": RECIPE, "source": SOURCE.name, "noise": NOISE.name, **asdict(self),
                "train_chunks": list(self.train_chunks), "test_chunks": list(self.test_chunks)}


@dataclass(frozen=True)
class Plan:
    """The chosen chunks: ``chunks`` in key order, the test keys, and where each source recording is."""

    chunks: list[Chunk]
    test: set[str]  # chunk keys
    paths: dict[str, Path]  # source (relative path) -> file
    qualifying: int

    def split(self, chunk: Chunk) -> str:
        return "test" if chunk.key in self.test else "train"


def stable_int(text: str) -> int:
    """A 64-bit integer from ``text`` that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "little")


def chunk_rng(seed: int, variant: str, key: str) -> np.random.Generator:
    """The stream of one test chunk's draws in one variant: stable whatever else is built."""
    return np.random.default_rng([seed, stable_int(variant), stable_int(key)])


def parse_range(text: str) -> tuple[int, int]:
    """``"2-3"`` -> ``(2, 3)``, ``"2"`` -> ``(2, 2)``."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    if not match or int(match.group(1)) < 1 or int(match.group(2) or match.group(1)) < int(match.group(1)):
        raise FewshotError(f"'{text}' is not a range like 2-3 (1 or more, low first)")
    return int(match.group(1)), int(match.group(2) or match.group(1))


def parse_variants(text: str) -> list[str]:
    """``all`` or a comma-separated list; ``clean`` always comes first (every variant shares its plan)."""
    names = list(VARIANTS) if text.strip() == "all" else [v.strip() for v in text.split(",") if v.strip()]
    for name in names:
        if name not in VARIANTS and not noise_band(name):
            raise FewshotError(f"unknown variant '{name}' (choose from {', '.join(VARIANTS)}, or noise-LO-HI)")
    return [CLEAN, *dict.fromkeys(n for n in names if n != CLEAN)]


def noise_band(variant: str) -> tuple[float, float] | None:
    match = _NOISE_NAME.match(variant)
    if not match or float(match.group(1)) >= float(match.group(2)):
        return None
    return float(match.group(1)), float(match.group(2))


# --- the plan -----------------------------------------------------------------------------------------

def recordings(source: Path = SOURCE) -> dict[str, list[tuple[str, int]]]:
    """``utterances.tsv``'s recordings by speaker: ``(relative path, samples)``, in path order."""
    import soundfile as sf

    by_speaker: dict[str, list[tuple[str, int]]] = {}
    with (source / "utterances.tsv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            info = sf.info(str(source / row["path"]))
            if info.samplerate != RATE:
                raise FewshotError(f"{source / row['path']} is {info.samplerate} Hz, expected {RATE}")
            by_speaker.setdefault(row["speaker"], []).append((row["path"], int(info.frames)))
    return {speaker: sorted(items) for speaker, items in sorted(by_speaker.items())}


def make_plan(params: Params, source: Path = SOURCE) -> Plan:
    """Which chunk of which recording goes to which side (reads only the files' headers)."""
    low = int(CHUNK_S[0] * RATE)
    need = params.train_chunks[1] + params.test_chunks[1]
    usable = {speaker: [(path, n) for path, n in items if n >= low] for speaker, items in recordings(source).items()}
    qualifying = sorted(s for s, items in usable.items() if len(items) >= need)
    count = len(qualifying) if params.speakers is None else params.speakers
    if not 1 <= count <= len(qualifying):
        raise FewshotError(f"--speakers {params.speakers}: {len(qualifying)} speakers of {source} have "
                           f"{need} or more recordings of {CHUNK_S[0]:g} s (choose 1-{len(qualifying)})")
    order = np.random.default_rng([params.seed, stable_int("speakers")]).permutation(len(qualifying))
    chosen = sorted(qualifying[k] for k in order[:count])
    chunks: list[Chunk] = []
    test: set[str] = set()
    for speaker in chosen:
        rng = np.random.default_rng([params.seed, stable_int(speaker)])
        n_test = int(rng.integers(params.test_chunks[0], params.test_chunks[1] + 1))
        n_train = int(rng.integers(params.train_chunks[0], params.train_chunks[1] + 1))
        items = usable[speaker]
        picked = [items[k] for k in rng.permutation(len(items))[:n_test + n_train]]
        for rank, (rel, samples) in enumerate(picked):
            # The cut of a recording has its own stream: the same chunks whichever side it lands on.
            spans = cut(samples, np.random.default_rng([params.seed, stable_int(rel)]))
            k = int(rng.integers(len(spans)))
            chunk = Chunk(speaker, rel, f"{speaker}/{Path(rel).stem}-c{k}.wav", *spans[k])
            chunks.append(chunk)
            if rank < n_test:
                test.add(chunk.key)
    paths = {c.source: source / c.source for c in chunks}
    return Plan(sorted(chunks, key=lambda c: c.key), test, paths, len(qualifying))


# --- levels and noise ---------------------------------------------------------------------------------

def active_power(wave: np.ndarray) -> float:
    """Mean power of the 20 ms frames above ``max(loudest - 30 dB, 10th percentile + 15 dB)`` (all frames
    when the signal has less than 15 dB of range): the speech's active power, for SNRs."""
    x = np.asarray(wave, dtype=np.float64)
    frames = len(x) // FRAME
    if frames == 0:
        return float(np.mean(x**2)) if len(x) else 0.0
    power = np.mean(x[:frames * FRAME].reshape(frames, FRAME) ** 2, axis=1)
    db = 10 * np.log10(power + 1e-20)
    threshold = max(db.max() - 30, np.percentile(db, 10) + 15)
    active = power[db >= threshold]
    return float(active.mean()) if active.size else float(power.mean())


def achieved_snr(clean: np.ndarray, mixed: np.ndarray) -> float:
    """SNR in dB of ``mixed`` against ``clean``: active speech power over the power of ``mixed - clean``."""
    clean64 = np.asarray(clean, dtype=np.float64)
    noise = np.asarray(mixed, dtype=np.float64) - clean64
    return float(10 * np.log10(active_power(clean64) / max(float(np.mean(noise**2)), 1e-30)))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech + g * noise`` with ``g`` such that the SNR (as in :func:`achieved_snr`) is ``snr_db``."""
    speech64, noise64 = np.asarray(speech, dtype=np.float64), np.asarray(noise, dtype=np.float64)
    target = active_power(speech64) / 10 ** (snr_db / 10)
    gain = np.sqrt(target / max(float(np.mean(noise64**2)), 1e-30))
    return speech64 + gain * noise64


def coloured_noise(n: int, colour: str, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with power ~ 1/f^0 (white), 1/f (pink) or 1/f^2 (brown), flat below 50 Hz."""
    exponent = {"white": 0, "pink": 1, "brown": 2}[colour]
    white = rng.standard_normal(n)
    if exponent == 0:
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / RATE), 50.0)
    spectrum *= (freqs / 50.0) ** (-exponent / 2)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n)


def load_noises(folder: Path = NOISE) -> dict[str, np.ndarray]:
    """The distinct clips of ``hu-nonspeech`` (``identical_to`` empty in its manifest), mono at 16 kHz."""
    import soundfile as sf
    import soxr

    clips: dict[str, np.ndarray] = {}
    with (folder / "manifest.tsv").open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            if row.get("identical_to", "").strip():
                continue
            wave, rate = sf.read(str(folder / row["file"]), dtype="float32", always_2d=True)
            mono = wave.mean(axis=1)
            clips[row["file"]] = np.asarray(soxr.resample(mono, rate, RATE) if rate != RATE else mono,
                                            dtype=np.float32)
    if not clips:
        raise FewshotError(f"{folder}: no noise clips in manifest.tsv")
    return dict(sorted(clips.items(), key=lambda kv: stable_int(kv[0])))


# --- the variants -------------------------------------------------------------------------------------

Draw = dict[str, Any]
Variant = Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, Draw]]


def channel(wave: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Draw]:
    """Another microphone and line: EQ, spectral tilt, gain, coloured noise at 15-30 dB SNR."""
    peaks = int(rng.integers(1, 3))
    draw: Draw = {
        "low_hz": rng.uniform(80, 400), "low_db": rng.uniform(-6, 6),
        "high_hz": rng.uniform(1500, 5000), "high_db": rng.uniform(-6, 6),
        "peaks": [{"hz": float(np.exp(rng.uniform(np.log(300), np.log(3000)))), "db": rng.uniform(-6, 6),
                   "q": rng.uniform(0.7, 2.0)} for _ in range(peaks)],
        "tilt_db_per_octave": rng.uniform(-1.5, 1.5), "gain_db": rng.uniform(-6, 6),
        "noise": ("white", "pink", "brown")[int(rng.integers(3))], "snr_db": rng.uniform(15, 30),
    }
    x = np.asarray(wave, dtype=np.float64)
    x = _lfilter(*_biquad("low", draw["low_hz"], draw["low_db"]), x)
    x = _lfilter(*_biquad("high", draw["high_hz"], draw["high_db"]), x)
    for peak in draw["peaks"]:
        x = _lfilter(*_biquad("peak", peak["hz"], peak["db"], peak["q"]), x)
    spectrum = np.fft.rfft(x)
    freqs = np.maximum(np.fft.rfftfreq(len(x), 1 / RATE), 50.0)
    spectrum *= 10 ** (draw["tilt_db_per_octave"] * np.log2(freqs / 1000.0) / 20)
    x = np.fft.irfft(spectrum, len(x)) * 10 ** (draw["gain_db"] / 20)
    mixed = mix_at_snr(x, coloured_noise(len(x), draw["noise"], rng), draw["snr_db"])
    draw["achieved_snr_db"] = achieved_snr(x, mixed)
    return mixed.astype(np.float32), draw


def background_noise(band: tuple[float, float], clips: dict[str, np.ndarray]) -> Variant:
    """Real noise (a clip of ``clips``, looped or cropped from a random offset) at an SNR in ``band``."""
    names = list(clips)

    def apply(wave: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Draw]:
        name = names[int(rng.integers(len(names)))]
        clip = clips[name]
        offset = int(rng.integers(len(clip)))
        noise = np.resize(np.roll(clip, -offset), len(wave))  # loops the clip as often as needed
        snr = float(rng.uniform(*band))
        mixed = mix_at_snr(wave, noise, snr)
        return mixed.astype(np.float32), {"noise": name, "offset": offset, "snr_db": snr,
                                          "achieved_snr_db": achieved_snr(wave, mixed)}

    return apply


def reverb(wave: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Draw]:
    """A random shoebox room with RT60 0.2-0.8 s (pyroomacoustics), cut at the direct path, same RMS."""
    import pyroomacoustics as pra
    from scipy.signal import fftconvolve

    rt60 = float(rng.uniform(0.2, 0.8))
    for _ in range(100):  # redraw a room that inverse Sabine cannot make this dry, or positions too close
        dims = [float(rng.uniform(4, 10)), float(rng.uniform(3, 8)), float(rng.uniform(2.5, 4))]
        src, mic = ([float(rng.uniform(0.5, d - 0.5)) for d in dims[:2]] + [float(rng.uniform(1.0, 2.0))]
                    for _ in range(2))
        distance = float(np.linalg.norm(np.subtract(src, mic)))
        if distance < 1.0:
            continue
        try:
            absorption, max_order = pra.inverse_sabine(rt60, dims)
        except ValueError:
            continue
        break
    else:
        raise FewshotError(f"reverb: no room found for RT60 {rt60:.2f} s")
    room = pra.ShoeBox(dims, fs=RATE, materials=pra.Material(absorption), max_order=max_order)
    room.add_source(src)
    room.add_microphone(mic)
    room.compute_rir()
    rir = np.asarray(room.rir[0][0], dtype=np.float64)
    start = int(np.argmax(np.abs(rir)))
    x = np.asarray(wave, dtype=np.float64)
    y = fftconvolve(x, rir)[start:start + len(x)]
    y *= np.sqrt(float(np.mean(x**2)) / max(float(np.mean(y**2)), 1e-30))
    draw: Draw = {"rt60_s": rt60, "room_m": dims, "source_m": src, "mic_m": mic, "distance_m": distance,
                  "absorption": float(absorption), "max_order": int(max_order),
                  "rt60_measured_s": float(np.asarray(room.measure_rt60()).ravel()[0])}
    return y.astype(np.float32), draw


def telephone(wave: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, Draw]:
    """A phone line: band-pass 300-3,400 Hz, 8 kHz, 8-bit mu-law, back to 16 kHz (nothing drawn)."""
    import soxr
    from scipy.signal import butter, sosfilt

    sos = butter(4, [300, 3400], btype="bandpass", fs=RATE, output="sos")
    narrow = soxr.resample(sosfilt(sos, np.asarray(wave, dtype=np.float64)), RATE, 8000)
    mu = 255.0
    x = np.clip(narrow, -1.0, 1.0)
    code = np.round((np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) + 1) / 2 * 255)  # 0..255
    y = (code / 255) * 2 - 1
    decoded = np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu
    back = np.asarray(soxr.resample(decoded, 8000, RATE), dtype=np.float64)
    out = np.zeros(len(wave))
    out[:min(len(back), len(wave))] = back[:len(wave)]
    return out.astype(np.float32), {"band_hz": [300, 3400], "rate": 8000, "mu_law": True}


def variant_fn(name: str, clips: dict[str, np.ndarray] | None = None) -> Variant:
    """The function that makes ``name``'s version of a test chunk; noise variants need ``clips``."""
    band = noise_band(name)
    if band is not None:
        return background_noise(band, clips if clips is not None else load_noises())
    table: dict[str, Variant] = {"channel": channel, "reverb": reverb, "telephone": telephone}
    if name not in table:
        raise FewshotError(f"unknown variant '{name}'")
    return table[name]


# --- building -----------------------------------------------------------------------------------------

def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _write_manifest(folder: Path, plan: Plan) -> Path:
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "speaker", "split"])
        writer.writerows((c.key, c.speaker, plan.split(c)) for c in plan.chunks)
    return manifest


def feature_name(chunk: Chunk) -> str:
    """The ``uttr-*.pt`` that :class:`automel.data.layout.DatasetWriter` gives ``chunk``."""
    return f"uttr-{hashlib.md5(f'{chunk.speaker}/{chunk.key}'.encode()).hexdigest()}.pt"


def _write_clean_audio(folder: Path, plan: Plan) -> dict[str, np.ndarray]:
    """Every chunk as 16 kHz PCM 16 WAV (the source samples); returns the test chunks' samples."""
    import soundfile as sf

    test_audio: dict[str, np.ndarray] = {}
    by_source: dict[str, list[Chunk]] = {}
    for c in plan.chunks:
        by_source.setdefault(c.source, []).append(c)
    for source, chunks in by_source.items():
        wave, _ = sf.read(str(plan.paths[source]), dtype="int16", always_2d=True)
        mono = wave[:, 0]
        for c in chunks:
            target = folder / c.key
            target.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(target), mono[c.start:c.stop], RATE, subtype="PCM_16")
            if c.key in plan.test:
                test_audio[c.key] = mono[c.start:c.stop].astype(np.float32) / 32768.0
    _write_manifest(folder, plan)
    return test_audio


def _write_variant_audio(folder: Path, clean: Path, plan: Plan, test_audio: dict[str, np.ndarray],
                         name: str, make: Variant, seed: int) -> list[Draw]:
    """The clean training WAVs (linked), each test chunk through ``make``; returns the draws."""
    import soundfile as sf

    draws: list[Draw] = []
    for c in plan.chunks:
        target = folder / c.key
        target.parent.mkdir(parents=True, exist_ok=True)
        if c.key not in plan.test:
            _link_or_copy(clean / c.key, target)  # byte-identical training audio, hence features
            continue
        wave, draw = make(test_audio[c.key], chunk_rng(seed, name, c.key))
        sf.write(str(target), wave, RATE, subtype="FLOAT")
        draws.append({"id": feature_name(c), "key": c.key, "speaker": c.speaker, **draw})
    _write_manifest(folder, plan)
    return draws


def _check_info(out: Path, params: Params) -> dict[str, Any]:
    info_path = out / INFO
    if info_path.is_file():
        info = json.loads(info_path.read_text(encoding="utf-8"))
        if info.get("params") != params.to_json():
            raise FewshotError(f"{out} holds a set built with other parameters ({json.dumps(info.get('params'))}); "
                               "choose another OUT_DIR")
        return info
    if out.is_dir() and any(out.iterdir()):
        raise FewshotError(f"{out} is not empty and has no {INFO}: not a fewshot.py folder; choose another OUT_DIR")
    return {"bench": "fewshot", "params": params.to_json(), "variants": {}}


def _counts(plan: Plan) -> dict[str, Any]:
    train = [c for c in plan.chunks if c.key not in plan.test]
    tested = [c for c in plan.chunks if c.key in plan.test]

    def histogram(chunks: Iterable[Chunk]) -> dict[str, int]:
        per: dict[str, int] = {}
        for c in chunks:
            per[c.speaker] = per.get(c.speaker, 0) + 1
        values = list(per.values())
        return {str(k): values.count(k) for k in sorted(set(values))}

    seconds = [c.seconds for c in plan.chunks]
    return {
        "qualifying_speakers": plan.qualifying, "speakers": len({c.speaker for c in plan.chunks}),
        "train_chunks": len(train), "test_chunks": len(tested), "recordings": len(plan.paths),
        "train_chunks_per_speaker": histogram(train), "test_chunks_per_speaker": histogram(tested),
        "train_s": round(sum(c.seconds for c in train), 1), "test_s": round(sum(c.seconds for c in tested), 1),
        "chunk_s": {"min": round(min(seconds), 2), "mean": round(float(np.mean(seconds)), 2),
                    "max": round(max(seconds), 2)},
    }


def build(out: Path, params: Params = Params(), variants: Iterable[str] = VARIANTS, *,
          source: Path = SOURCE, noise: Path = NOISE, keep_audio: Path | None = None,
          log: Callable[[str], None] = lambda line: print(line, flush=True)) -> dict[str, Path]:
    """Write (the missing ones of) ``out/<variant>`` for ``variants`` (``clean`` always); returns their paths.

    Raises :class:`FewshotError` for other parameters in ``out``, a bad ``--speakers`` or a missing package.
    """
    from automel.data.prepare import prepare_dataset

    wanted = parse_variants(",".join(variants))
    if "reverb" in wanted:
        try:
            import pyroomacoustics  # noqa: F401
        except ImportError:
            raise FewshotError("the reverb variant needs pyroomacoustics: pip install -e '.[bench]' "
                               "(or leave reverb out of --variants)") from None
    out = Path(out)
    info = _check_info(out, params)
    paths = {name: out / name for name in wanted}
    missing = [name for name in wanted if not _is_dataset(paths[name])]
    if not missing and keep_audio is None:
        for name in wanted:
            log(json.dumps({"bench": "fewshot", "data": name, "path": str(paths[name]), "reused": True}))
        return paths
    started = time.monotonic()
    plan = make_plan(params, source)
    out.mkdir(parents=True, exist_ok=True)
    info.update(counts=_counts(plan))
    (out / INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
    clips = load_noises(noise) if any(noise_band(n) for n in missing) else None
    with tempfile.TemporaryDirectory(prefix="fewshot-") as tmp:
        audio_root = keep_audio if keep_audio is not None else Path(tmp)
        clean_audio = audio_root / CLEAN
        shutil.rmtree(clean_audio, ignore_errors=True)
        test_audio = _write_clean_audio(clean_audio, plan)
        for name in wanted:
            if name not in missing and keep_audio is None:
                log(json.dumps({"bench": "fewshot", "data": name, "path": str(paths[name]), "reused": True}))
                continue
            began = time.monotonic()
            folder = audio_root / name
            draws: list[Draw] = []
            if name != CLEAN:
                shutil.rmtree(folder, ignore_errors=True)
                draws = _write_variant_audio(folder, clean_audio, plan, test_audio, name,
                                             variant_fn(name, clips), params.seed)
                (out / "draws").mkdir(exist_ok=True)
                with (out / "draws" / f"{name}.jsonl").open("w", encoding="utf-8") as fh:
                    fh.writelines(json.dumps(d) + "\n" for d in draws)
            if name in missing:
                shutil.rmtree(paths[name], ignore_errors=True)
                report = prepare_dataset(None, paths[name], manifest=folder / "manifest.csv", seed=params.seed)
                if report.skipped:
                    raise FewshotError(f"{name}: prepare skipped {report.skipped[0][0]}: {report.skipped[0][1]}")
            entry: dict[str, Any] = {"built_s": round(time.monotonic() - began, 1)}
            snrs = [d["achieved_snr_db"] for d in draws if "achieved_snr_db" in d]
            if snrs:
                entry["achieved_snr_db"] = {"min": round(min(snrs), 2), "mean": round(float(np.mean(snrs)), 2),
                                            "max": round(max(snrs), 2)}
            if name in missing or name not in info["variants"]:
                info["variants"][name] = entry
            (out / INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
            counts = info["counts"] if name == CLEAN else {"test_chunks": info["counts"]["test_chunks"]}
            log(json.dumps({"bench": "fewshot", "data": name, "path": str(paths[name]), "reused": name not in missing,
                            **counts, **entry}))
    info["build_s"] = round(time.monotonic() - started, 1)
    (out / INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for clean/ and one folder per variant")
    parser.add_argument("--speakers", type=int, default=None, help="how many speakers (default: all that qualify)")
    parser.add_argument("--train-chunks", default="2-3", help="training chunks per speaker (default 2-3)")
    parser.add_argument("--test-chunks", default="1-2", help="test chunks per speaker (default 1-2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variants", default="all", help=f"all, or some of {','.join(VARIANTS)} (noise-LO-HI)")
    parser.add_argument("--keep-audio", type=Path, default=None, help="also keep every set's WAV chunks here")
    args = parser.parse_args(argv)
    try:
        variants = parse_variants(args.variants)
        needs_noise = any(noise_band(v) for v in variants)
        for folder in (SOURCE, *([NOISE] if needs_noise else [])):
            if not folder.is_dir():
                raise FewshotError(f"{folder} not found (the shared data must sit beside the repository)")
        params = Params(args.seed, args.speakers, parse_range(args.train_chunks), parse_range(args.test_chunks))
        build(args.out, params, variants, keep_audio=args.keep_audio)
    except FewshotError as exc:
        print(f"fewshot: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
