"""``automel data prepare``: real audio into an HW4-layout data set of 40-bin log-mel fbank.

Three kinds of source: a folder per speaker (the first path component under SRC names the speaker), a
flat folder whose file names hold the speaker (``speaker_regex`` group 1), or a CSV manifest
``path,speaker[,split]``. Every file is decoded and featurised first (in worker processes when
``jobs > 1``); unreadable or too-short files are skipped and reported, never fatal. The held-out test
utterances are then chosen among the usable files, and :class:`~automel.data.layout.DatasetWriter`
writes the data set atomically, in key order, so the output is the same for any ``jobs``.
"""

from __future__ import annotations

import csv
import io
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from automel.data.frontend import SAMPLE_RATE, FbankParams, compute_fbank, load_audio
from automel.data.layout import DatasetWriter, choose_test_keys
from automel.errors import ConfigError, DataError, DiskError
from automel.files import read_user_text

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})
SPLITS = ("train", "test")
HEADER = ["path", "speaker", "split"]
MIN_FRAMES = 1  # a file must give at least one 25 ms fbank frame (FSDD's 0.44 s clips give ~44)
_PT_OVERHEAD, _BLOCK = 1_400, 4096  # torch.save's framing of one tensor; a file system block

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class PrepareReport:
    """What ``prepare_dataset`` wrote, and every file (or speaker) it left out with the reason."""

    out: Path
    speakers: int
    train_utterances: int
    test_utterances: int
    skipped: list[tuple[Path, str]]


@dataclass(frozen=True)
class AudioSource:
    """One audio file: where it is, whose voice, its key (relative path) and a split fixed by a manifest."""

    path: Path
    speaker: str
    key: str
    split: str | None = None


def prepare_dataset(
    src: Path | None,
    out: Path,
    *,
    test_per_speaker: int = 2,
    manifest: Path | None = None,
    speaker_regex: str | None = None,
    jobs: int = 1,
    seed: int = 0,
    on_progress: Progress | None = None,
) -> PrepareReport:
    """Decode, featurise and write the audio of ``src`` (or ``manifest``) as a new data set in ``out``.

    Raises :class:`ConfigError` for invalid options (e.g. a bad ``speaker_regex``) and :class:`DataError`
    for a missing source, a malformed manifest, no usable audio or an existing non-empty ``out``; in every
    error case ``out`` is left as it was and no temporary folder remains.
    """
    if jobs < 1:
        raise ConfigError(f"`jobs` must be at least 1, got {jobs}")
    if test_per_speaker < 0:
        raise ConfigError(f"`test_per_speaker` must be 0 or more, got {test_per_speaker}")
    if (src is None) == (manifest is None):
        raise ConfigError("give either an audio folder SRC or `manifest` FILE (exactly one of them)")
    if manifest is not None and speaker_regex is not None:
        raise ConfigError("`speaker_regex` applies to an audio folder, not to `manifest` (it names speakers)")
    params = FbankParams()
    out = Path(out)
    writer = DatasetWriter(out, n_mels=params.n_mels, info={  # refuses a non-empty OUT before any decoding
        "kind": "prepared", "name": out.name, "source": str(src or manifest), "features": params.to_json(),
    })
    DiskError.check(writer.out.parent)  # a read-only or unwritable OUT fails before the decoding, too
    skipped: list[tuple[Path, str]] = []
    if manifest is not None:
        sources = read_manifest(Path(manifest))
    else:
        assert src is not None
        sources = scan_folder(Path(src), speaker_regex, skipped)
    results = _featurize_all([s.path for s in sources], jobs, on_progress)
    features: dict[str, np.ndarray] = {}
    for source, result in zip(sources, results, strict=True):
        if isinstance(result, str):
            skipped.append((source.path, result))
        else:
            features[source.key] = result
    speaker_root = src if manifest is None and speaker_regex is None else None  # folder per speaker
    usable = _usable_sources(sources, features, skipped, speaker_root)
    if not usable:
        raise DataError(f"{src or manifest}: none of the {len(sources)} audio files is usable "
                        f"(first problem: {skipped[0][0]}: {skipped[0][1]})")
    if any(s.split is not None for s in usable):  # a manifest's split column decides
        test_keys = {s.key for s in usable if s.split == "test"}
    else:
        keys = {speaker: [s.key for s in group] for speaker, group in _by_speaker(usable).items()}
        test_keys = choose_test_keys(keys, test_per_speaker, seed)
    needed = sum(_file_bytes(features[s.key]) for s in usable) + _BLOCK * 4  # + the JSON files and answers
    with writer, DiskError.guard(writer.out.parent, needed):  # inside the writer: sees the disk before cleanup
        for s in sorted(usable, key=lambda s: s.key):
            writer.add(s.speaker, s.key, features.pop(s.key), test=s.key in test_keys)
        path = writer.commit()
    speakers = len({s.speaker for s in usable})
    return PrepareReport(path, speakers, len(usable) - len(test_keys), len(test_keys), skipped)


def _file_bytes(features: np.ndarray) -> int:
    """What one saved feature file takes on disk: its float32 values, torch's zip framing, whole blocks."""
    size = features.shape[0] * features.shape[1] * 4 + _PT_OVERHEAD
    return -(-size // _BLOCK) * _BLOCK


def scan_folder(src: Path, speaker_regex: str | None, skipped: list[tuple[Path, str]]) -> list[AudioSource]:
    """The audio files under ``src`` with their speakers; files without a speaker go to ``skipped``."""
    pattern = _compile_speaker_regex(speaker_regex) if speaker_regex is not None else None
    if not src.is_dir():
        raise DataError(f"{src}: audio folder not found (or not a directory)")
    files = sorted(p for p in src.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{src}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) found")
    sources: list[AudioSource] = []
    for path in files:
        rel = path.relative_to(src)
        if pattern is not None:
            match = pattern.search(path.name)
            speaker = match.group(1) if match else None
        else:
            speaker = rel.parts[0] if len(rel.parts) > 1 else None
        if speaker:
            sources.append(AudioSource(path, speaker, rel.as_posix()))
        else:
            why = "name does not match the speaker regex" if pattern else "not in a speaker folder"
            skipped.append((path, why))
    if not sources:
        hint = f"the speaker regex '{speaker_regex}' matches none" if pattern else "all lie directly in it"
        raise DataError(f"{src}: no audio file has a speaker: {hint} (give one folder per speaker, "
                        "or `speaker_regex` for a flat folder)")
    return sorted(sources, key=lambda s: s.key)


def read_manifest(manifest: Path) -> list[AudioSource]:
    """Parse a CSV ``path,speaker[,split]`` (optional header); relative paths resolve against its folder."""
    text = read_user_text(manifest, "manifest")
    reader = csv.reader(io.StringIO(text))
    width: int | None = None
    header_possible = True
    sources: dict[str, AudioSource] = {}
    for row in reader:
        cells = [cell.strip() for cell in row]
        if not any(cells):
            continue
        where = f"{manifest}: line {reader.line_num}"
        if header_possible and [c.lower() for c in cells] in (HEADER[:2], HEADER):
            header_possible, width = False, len(cells)
            continue
        header_possible = False
        if len(cells) not in (2, 3) or (width is not None and len(cells) != width):
            raise DataError(f"{where}: expected {width or '2 or 3'} columns 'path,speaker[,split]', "
                            f"found {len(cells)}")
        width = len(cells)
        rel, speaker = cells[0], cells[1]
        split = cells[2].lower() if width == 3 else None
        if not rel or not speaker:
            raise DataError(f"{where}: empty path or speaker")
        if split is not None and split not in SPLITS:
            raise DataError(f"{where}: unknown split '{cells[2]}' (use 'train' or 'test')")
        path = manifest.parent / rel
        if not path.is_file():
            raise DataError(f"{where}: audio file {path} not found")
        if rel in sources:
            raise DataError(f"{where}: {rel} is listed twice")
        sources[rel] = AudioSource(path, speaker, rel, split)
    if not sources:
        raise DataError(f"{manifest}: the manifest is empty (expected lines 'path,speaker[,split]')")
    return sorted(sources.values(), key=lambda s: s.key)


def _compile_speaker_regex(speaker_regex: str) -> re.Pattern[str]:
    try:
        pattern = re.compile(speaker_regex)
    except re.error as exc:
        raise ConfigError(f"speaker regex '{speaker_regex}' is not a valid regex ({exc})") from None
    if pattern.groups < 1:
        raise ConfigError(f"speaker regex '{speaker_regex}' needs a group around the speaker: '_(\\w+?)_'")
    return pattern


def _usable_sources(sources: list[AudioSource], features: dict[str, np.ndarray],
                    skipped: list[tuple[Path, str]], speaker_root: Path | None) -> list[AudioSource]:
    """The decoded sources of every speaker left with a training file; list the dropped speakers."""
    usable: list[AudioSource] = []
    for speaker, group in sorted(_by_speaker(sources).items()):
        decoded = [s for s in group if s.key in features]
        if any(s.split != "test" for s in decoded):
            usable.extend(decoded)
            continue
        where = speaker_root / speaker if speaker_root is not None else Path(speaker)
        left_out = f"; its {len(decoded)} usable test file(s) are left out too" if decoded else ""
        skipped.append((where, f"speaker '{speaker}' dropped: no usable training file among its "
                               f"{len(group)}{left_out}"))
        for s in decoded:
            del features[s.key]
    return usable


def _by_speaker(sources: list[AudioSource]) -> dict[str, list[AudioSource]]:
    groups: dict[str, list[AudioSource]] = {}
    for source in sources:
        groups.setdefault(source.speaker, []).append(source)
    return groups


def _featurize_all(paths: list[Path], jobs: int, on_progress: Progress | None) -> list[np.ndarray | str]:
    """Featurise ``paths`` in order, with ``jobs`` processes; report ``on_progress(done, total)``."""
    total = len(paths)
    report = on_progress or (lambda done, total: None)
    report(0, total)
    results: list[np.ndarray | str] = [""] * total
    if jobs == 1 or total <= 1:
        for index, path in enumerate(paths):
            results[index] = featurize_file(str(path))
            report(index + 1, total)
        return results
    # spawn: the parent may run threads (a progress bar, torch), which fork does not mix well with;
    # small chunks keep the per-task overhead low for many short files (FSDD) and progress smooth
    size = max(1, min(32, total // (jobs * 8)))
    pool = ProcessPoolExecutor(max_workers=min(jobs, total), mp_context=multiprocessing.get_context("spawn"),
                               initializer=die_with_parent, initargs=(os.getpid(),))
    try:
        futures = {pool.submit(_featurize_chunk, [str(p) for p in paths[start:start + size]]): start
                   for start in range(0, total, size)}
        done = 0
        for future in as_completed(futures):
            for offset, result in enumerate(future.result()):
                results[futures[future] + offset] = result
                done += 1
                report(done, total)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def die_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when ``parent`` dies, even by SIGKILL, which gives the parent no
    chance to stop it (an orphan would wait forever on its dead pipe, and hold multiprocessing's resource
    tracker with it). Linux kills it at once (``PR_SET_PDEATHSIG``); elsewhere a thread watches the parent."""
    if _parent_death_signal(signal.SIGKILL):
        if os.getppid() != parent:  # the parent died before the prctl took effect
            os._exit(1)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="automel-parent-watch", daemon=True).start()


def _parent_death_signal(number: int) -> bool:
    """Ask Linux to send ``number`` to this process when its parent dies; False where that is not possible."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    pr_set_pdeathsig = 1  # from <linux/prctl.h>
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, number)) == 0
    except (OSError, AttributeError):
        return False


def _featurize_chunk(paths: list[str]) -> list[np.ndarray | str]:
    """:func:`featurize_file` for each of ``paths`` (one worker task)."""
    return [featurize_file(path) for path in paths]


def featurize_file(path: str) -> np.ndarray | str:
    """Fbank ``(T, 40)`` of one audio file, or why it is unusable (runs in worker processes)."""
    try:
        wave = load_audio(Path(path))
    except (RuntimeError, ValueError, OSError, EOFError) as exc:
        detail = getattr(exc, "error_string", None) or str(exc).replace(path, "<file>")  # no path twice
        return f"unreadable: {' '.join(detail.split()) or type(exc).__name__}"
    if wave.size == 0:
        return "unreadable: no audio samples"
    if not np.isfinite(wave).all():
        return "unreadable: samples are NaN or infinite"
    features = compute_fbank(wave, FbankParams())
    if features.shape[0] < MIN_FRAMES:
        return f"too short: {wave.size / SAMPLE_RATE * 1000:.1f} ms gives no 25 ms fbank frame"
    return features
