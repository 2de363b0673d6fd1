"""Real speech in short chunks: the shared LibriSpeech sample as an HW4-layout data set of 2-4 s utterances.

    .venv/bin/python bench/realspeech.py OUT_DIR [--channel-shift] [--seed 0]

Reads every FLAC of ``../shared/data/librispeech-test-other/`` (10 speakers x 10 utterances, 16 kHz,
~7.7 s each; one folder per speaker, nesting allowed) and cuts each into consecutive chunks of random
length 2-4 s (seeded; the last chunk takes what is left when that is 2-4 s, a tail under 2 s is
dropped). The chunks are written as 16 kHz WAV (PCM 16, i.e. the source samples unchanged) into a
temporary folder and turned into ``OUT_DIR/librispeech`` by :func:`automel.data.prepare.prepare_dataset`
(the library behind ``automel data prepare``) with a ``path,speaker,split`` manifest: whole source
utterances go to the test side until about a third of each speaker's chunks are test, so a test chunk
never shares a recording with a training chunk (``--test-per-speaker`` would pick chunks one by one).

``--channel-shift`` also writes ``OUT_DIR/librispeech-shifted``: the same chunks, split and manifest
keys (hence the same ``uttr-*.pt`` names and ``answers.csv``), the training chunks byte-identical, but
every *test* chunk first passed, in the audio domain, through its own random channel: a low shelf
(80-400 Hz) and a high shelf (1.5-5 kHz) of +-6 dB each and a peaking EQ (300 Hz-3 kHz, +-6 dB, Q
0.7-2), all RBJ biquads; a gain of +-6 dB; additive white or pink noise at 15-30 dB SNR. Shifted chunks
are stored as float WAV so the gain never clips.

Prints one JSON line per data set with its counts. Data sets already in OUT_DIR are kept (a
``realspeech.json`` there records the seed; another seed is refused). Exits 2 with one line when
``../shared`` is absent.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SOURCE = SHARED / "data" / "librispeech-test-other"
RATE = 16_000
CHUNK_S = (2.0, 4.0)
TEST_SHARE = 1 / 3
CLEAN, SHIFTED = "librispeech", "librispeech-shifted"
INFO = "realspeech.json"
SHIFT_SEED_OFFSET = 1_000_003  # the channel draws never touch the chunking stream


@dataclass(frozen=True)
class Chunk:
    speaker: str
    source: str  # the source utterance's relative path
    key: str  # SPEAKER/<utterance>-cK.wav, relative to the audio folder
    start: int
    stop: int

    @property
    def seconds(self) -> float:
        return (self.stop - self.start) / RATE


def source_files(source: Path = SOURCE) -> dict[str, list[Path]]:
    """The FLAC files under ``source`` by speaker (the first folder under it)."""
    files: dict[str, list[Path]] = {}
    for path in sorted(source.rglob("*.flac")):
        rel = path.relative_to(source)
        if len(rel.parts) > 1:
            files.setdefault(rel.parts[0], []).append(path)
    return files


def cut(samples: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` of random 2-4 s lengths; the tail is a chunk if >= 2 s, else dropped."""
    low, high = (int(s * RATE) for s in CHUNK_S)
    spans, start = [], 0
    while samples - start >= low:
        length = min(int(rng.uniform(low, high + 1)), high, samples - start)
        spans.append((start, start + length))
        start += length
    return spans


def choose_test_sources(chunks_by_source: dict[str, int], rng: np.random.Generator) -> set[str]:
    """Whole utterances for the test side, as close to :data:`TEST_SHARE` of the speaker's chunks as any
    subset gets (a random one among the closest; greedy over a random order past 16 utterances), >= 1 each side.
    """
    sources = sorted(s for s, n in chunks_by_source.items() if n > 0)
    if len(sources) < 2:
        return set()
    counts = [chunks_by_source[s] for s in sources]
    target = TEST_SHARE * sum(counts)
    if len(sources) <= 16:
        subsets = range(1, 2 ** len(sources) - 1)  # bit masks: neither empty nor everything
        sizes = {mask: sum(n for k, n in enumerate(counts) if mask >> k & 1) for mask in subsets}
        best = min(abs(size - target) for size in sizes.values())
        closest = [mask for mask, size in sizes.items() if abs(size - target) == best]
        mask = closest[int(rng.integers(len(closest)))]
        return {s for k, s in enumerate(sources) if mask >> k & 1}
    chosen: list[str] = []
    count = 0
    for k in rng.permutation(len(sources)):
        if abs(count + counts[k] - target) < abs(count - target) and len(chosen) < len(sources) - 1:
            chosen.append(sources[k])
            count += counts[k]
    return set(chosen) or {sources[int(np.argmin(counts))]}


# --- the channel --------------------------------------------------------------------------------------

def _biquad(kind: str, freq: float, gain_db: float, q: float = 0.7071) -> tuple[np.ndarray, np.ndarray]:
    """RBJ audio-EQ-cookbook biquad ``(b, a)``, ``a[0] == 1``: ``low``/``high`` shelf or ``peak``."""
    a_lin = 10 ** (gain_db / 40)
    w0 = 2 * np.pi * freq / RATE
    cos, alpha = np.cos(w0), np.sin(w0) / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a_lin, -2 * cos, 1 - alpha * a_lin]
        a = [1 + alpha / a_lin, -2 * cos, 1 - alpha / a_lin]
    else:
        root = 2 * np.sqrt(a_lin) * alpha
        sign = 1 if kind == "low" else -1
        b = [a_lin * ((a_lin + 1) - sign * (a_lin - 1) * cos + root),
             sign * 2 * a_lin * ((a_lin - 1) - sign * (a_lin + 1) * cos),
             a_lin * ((a_lin + 1) - sign * (a_lin - 1) * cos - root)]
        a = [(a_lin + 1) + sign * (a_lin - 1) * cos + root,
             -sign * 2 * ((a_lin - 1) + sign * (a_lin + 1) * cos),
             (a_lin + 1) + sign * (a_lin - 1) * cos - root]
    b_arr, a_arr = np.asarray(b, dtype=np.float64), np.asarray(a, dtype=np.float64)
    return b_arr / a_arr[0], a_arr / a_arr[0]


def _lfilter(b: np.ndarray, a: np.ndarray, x: np.ndarray) -> np.ndarray:
    try:
        from scipy.signal import lfilter
    except ImportError:  # a direct-form loop: slow, but the chunks are short and few
        y = np.zeros_like(x)
        x1 = x2 = y1 = y2 = 0.0
        for i, v in enumerate(x):
            y[i] = b[0] * v + b[1] * x1 + b[2] * x2 - a[1] * y1 - a[2] * y2
            x2, x1, y2, y1 = x1, v, y1, y[i]
        return y
    return np.asarray(lfilter(b, a, x))


def _noise(n: int, pink: bool, rng: np.random.Generator) -> np.ndarray:
    white = rng.standard_normal(n)
    if not pink:
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= np.sqrt(freqs[1:] / freqs[1])  # power ~ 1/f
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n)


def channel(wave: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, float | str]]:
    """``wave`` through a random EQ, gain and noise; returns the new wave and what was drawn."""
    draw: dict[str, float | str] = {
        "low_hz": rng.uniform(80, 400), "low_db": rng.uniform(-6, 6),
        "high_hz": rng.uniform(1500, 5000), "high_db": rng.uniform(-6, 6),
        "peak_hz": float(np.exp(rng.uniform(np.log(300), np.log(3000)))), "peak_db": rng.uniform(-6, 6),
        "peak_q": rng.uniform(0.7, 2.0), "gain_db": rng.uniform(-6, 6), "snr_db": rng.uniform(15, 30),
        "noise": "pink" if rng.random() < 0.5 else "white",
    }
    x = wave.astype(np.float64)
    for kind in ("low", "high", "peak"):
        q = float(draw["peak_q"]) if kind == "peak" else 0.7071
        x = _lfilter(*_biquad(kind, float(draw[f"{kind}_hz"]), float(draw[f"{kind}_db"]), q), x)
    x *= 10 ** (float(draw["gain_db"]) / 20)
    noise = _noise(len(x), draw["noise"] == "pink", rng)
    power = float(np.mean(x**2)) or 1e-12
    noise *= np.sqrt(power / (10 ** (float(draw["snr_db"]) / 10)) / (float(np.mean(noise**2)) or 1e-12))
    return (x + noise).astype(np.float32), draw


# --- building -----------------------------------------------------------------------------------------

def make_chunks(seed: int, source: Path = SOURCE) -> tuple[list[Chunk], set[str], dict[str, np.ndarray]]:
    """Every chunk, the test source utterances, and each source's samples (float32 in [-1, 1])."""
    import soundfile as sf

    rng = np.random.default_rng(seed)
    chunks: list[Chunk] = []
    test: set[str] = set()
    audio: dict[str, np.ndarray] = {}
    for speaker, paths in sorted(source_files(source).items()):
        per_source: dict[str, int] = {}
        for path in paths:
            wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
            if rate != RATE:
                raise SystemExit(f"realspeech: {path} is {rate} Hz, expected {RATE}")
            rel = path.relative_to(source).as_posix()
            audio[rel] = wave.mean(axis=1)
            spans = cut(len(audio[rel]), rng)
            per_source[rel] = len(spans)
            stem = path.stem
            chunks += [Chunk(speaker, rel, f"{speaker}/{stem}-c{k}.wav", a, b) for k, (a, b) in enumerate(spans)]
        test |= choose_test_sources(per_source, rng)
    return chunks, test, audio


def _write_audio_set(folder: Path, chunks: list[Chunk], test: set[str], audio: dict[str, np.ndarray],
                     shift_rng: np.random.Generator | None, clean_folder: Path | None) -> Path:
    """WAV chunks + ``manifest.csv`` in ``folder``; with ``shift_rng`` the test chunks go through a channel."""
    import soundfile as sf

    rows = []
    for c in chunks:
        target = folder / c.key
        target.parent.mkdir(parents=True, exist_ok=True)
        split = "test" if c.source in test else "train"
        if shift_rng is not None and split == "test":
            wave, _ = channel(audio[c.source][c.start:c.stop], shift_rng)
            sf.write(str(target), wave, RATE, subtype="FLOAT")
        elif clean_folder is not None:
            shutil.copy2(clean_folder / c.key, target)  # byte-identical training audio
        else:
            sf.write(str(target), audio[c.source][c.start:c.stop], RATE, subtype="PCM_16")
        rows.append((c.key, c.speaker, split))
    manifest = folder / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "speaker", "split"])
        writer.writerows(rows)
    return manifest


def _is_dataset(path: Path) -> bool:
    return (path / "metadata.json").is_file() and (path / "answers.csv").is_file()


def build(out: Path, seed: int = 0, channel_shift: bool = False, source: Path = SOURCE) -> dict[str, Path]:
    """Write (the missing ones of) ``out/librispeech`` and, with ``channel_shift``, ``out/librispeech-shifted``.

    Returns the data sets' paths by name; prints one JSON line per data set.
    """
    from automel.data.prepare import prepare_dataset

    out.mkdir(parents=True, exist_ok=True)
    info_path = out / INFO
    if info_path.is_file() and json.loads(info_path.read_text())["seed"] != seed:
        raise SystemExit(f"realspeech: {out} was built with another seed; choose a new OUT_DIR")
    info_path.write_text(json.dumps({"seed": seed, "source": str(source)}))
    wanted = [CLEAN, SHIFTED] if channel_shift else [CLEAN]
    paths = {name: out / name for name in wanted}
    missing = [name for name in wanted if not _is_dataset(paths[name])]
    chunks, test, audio = make_chunks(seed, source) if missing else ([], set(), {})
    with tempfile.TemporaryDirectory(prefix="realspeech-") as tmp:
        clean_audio = Path(tmp) / "clean"
        if missing:
            _write_audio_set(clean_audio, chunks, test, audio, None, None)
        for name in wanted:
            if name in missing:
                shutil.rmtree(paths[name], ignore_errors=True)
                if name == CLEAN:
                    manifest = clean_audio / "manifest.csv"
                else:
                    shift_rng = np.random.default_rng(seed + SHIFT_SEED_OFFSET)
                    manifest = _write_audio_set(Path(tmp) / "shifted", chunks, test, audio, shift_rng, clean_audio)
                report = prepare_dataset(None, paths[name], manifest=manifest, seed=seed)
                skipped = [f"{p}: {why}" for p, why in report.skipped]
            else:
                skipped = []
            _print_counts(name, paths[name], chunks if name in missing else None, test, skipped)
    return paths


def _print_counts(name: str, path: Path, chunks: list[Chunk] | None, test: set[str], skipped: list[str]) -> None:
    metadata = json.loads((path / "metadata.json").read_text())
    test_count = len(json.loads((path / "testdata.json").read_text())["utterances"])
    line: dict[str, object] = {
        "bench": "realspeech", "data": name, "path": str(path), "speakers": len(metadata["speakers"]),
        "train_chunks": sum(len(u) for u in metadata["speakers"].values()), "test_chunks": test_count,
        "reused": chunks is None,
    }
    if chunks is not None:
        seconds = [c.seconds for c in chunks]
        line.update(source_utterances=len({c.source for c in chunks}), test_source_utterances=len(test),
                    chunk_s={"min": round(min(seconds), 2), "mean": round(float(np.mean(seconds)), 2),
                             "max": round(max(seconds), 2)},
                    test_share=round(sum(c.source in test for c in chunks) / len(chunks), 3), skipped=skipped)
    print(json.dumps(line), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder for librispeech/ (and librispeech-shifted/)")
    parser.add_argument("--channel-shift", action="store_true", help="also write the channel-shifted set")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not SHARED.is_dir() or not SOURCE.is_dir():
        print(f"realspeech: {SOURCE} not found (the shared data must sit beside the repository)",
              file=sys.stderr)
        raise SystemExit(2)
    build(args.out, args.seed, args.channel_shift)


if __name__ == "__main__":
    main()
