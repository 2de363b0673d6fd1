"""The synthetic multi-speaker corpus: generated deterministically from a seed, in the HW4 layout.

No real speech corpus can ship with automel, so it synthesises one: each speaker is a source–filter voice
(:mod:`automel.data.voices`), each utterance a random phone sequence from an inventory shared by all
speakers, recorded through its own random channel, then turned into features by the same front end as
real audio (:func:`automel.data.frontend.compute_fbank`). Every utterance is seeded from
``(seed, speaker, index)`` alone, so a spec always gives byte-identical tensors, however many processes
generate it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from automel.data.frontend import FbankParams, compute_fbank
from automel.data.layout import METADATA, DatasetWriter, choose_test_keys, read_dataset
from automel.errors import ConfigError, DataError

GENERATOR_VERSION = 3  # bump when the generator's output changes, so cached default corpora regenerate
_VOICE_STREAM, _UTTERANCE_STREAM = 1, 2  # keep the voice and utterance random streams apart


@dataclass(frozen=True)
class SynthSpec:
    """What to generate; invalid values raise :class:`ConfigError` on construction."""

    speakers: int = 64
    utterances: int = 40
    seed: int = 0
    test_per_speaker: int = 4

    def __post_init__(self) -> None:
        if self.speakers < 2:
            raise ConfigError(f"synthetic corpus: speakers must be at least 2 (got {self.speakers})")
        if self.utterances < 2:
            raise ConfigError(f"synthetic corpus: utterances must be at least 2 (got {self.utterances})")
        if not 0 <= self.test_per_speaker < self.utterances:
            raise ConfigError(
                f"synthetic corpus: test_per_speaker must be in 0..{self.utterances - 1} so every speaker "
                f"keeps a training utterance (got {self.test_per_speaker})"
            )
        if self.seed < 0:
            raise ConfigError(f"synthetic corpus: seed must be non-negative (got {self.seed})")

    def key(self) -> str:
        """A short stable name, e.g. ``v1-64x40-t4-s0`` (generator version, size, held-out, seed)."""
        return f"v{GENERATOR_VERSION}-{self.speakers}x{self.utterances}-t{self.test_per_speaker}-s{self.seed}"


def speaker_name(index: int) -> str:
    return f"syn{index:04d}"


def utterance_key(speaker: int, index: int) -> str:
    return f"{speaker_name(speaker)}-{index:04d}"


def synthesise_speaker(seed: int, speaker: int, utterances: int) -> list[np.ndarray]:
    """Features ``(T, 40)`` of one speaker's utterances; depends on its arguments only (runs in workers)."""
    from automel.data import voices

    voice = voices.sample_voice(np.random.default_rng(np.random.SeedSequence([_VOICE_STREAM, seed, speaker])))
    params = FbankParams()
    result = []
    for index in range(utterances):
        rng = np.random.default_rng(np.random.SeedSequence([_UTTERANCE_STREAM, seed, speaker, index]))
        result.append(compute_fbank(voices.utterance(voice, rng), params))
    return result


def _init_worker(parent: int) -> None:
    """Prepare a worker process: exit with the parent, and tune the allocator."""
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    _tune_allocator()


def _exit_with_parent(parent: int) -> None:
    # A killed parent (SIGTERM, SIGKILL) leaves spawn workers blocked on a queue that never closes,
    # because each worker holds its write end too: without this they would linger forever.
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _tune_allocator() -> None:
    """Keep freed memory in a worker process instead of handing it back to the OS.

    Synthesis allocates many short-lived arrays of a few MB; with glibc's defaults each is mmapped (or the
    heap trimmed) and page-faulted in afresh, which costs about a third of the run in kernel time. Only
    the workers, which exit when the corpus is done, are tuned; elsewhere this does nothing.
    """
    import ctypes

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        libc.mallopt(m_mmap_threshold, 256 << 20)
        libc.mallopt(m_trim_threshold, 512 << 20)
    except (OSError, AttributeError):  # not glibc (e.g. musl): keep the defaults
        pass


def _spawn_can_start() -> bool:
    """Whether spawned workers can start: they re-import ``__main__`` from its file, which a script read from
    stdin does not have (a notebook, ``python -c`` or ``-m`` and a script file are fine)."""
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    return main_file is None or os.path.isfile(main_file)


def _per_speaker(spec: SynthSpec, jobs: int) -> Generator[list[np.ndarray], None, None]:
    """Each speaker's features, in speaker order, computed by ``jobs`` processes (in-process for 1)."""
    if jobs <= 1 or not _spawn_can_start():
        for speaker in range(spec.speakers):
            yield synthesise_speaker(spec.seed, speaker, spec.utterances)
        return
    import multiprocessing

    # spawn, not fork: the parent may hold torch's thread pools, which a forked child must not inherit.
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init_worker, initargs=(os.getpid(),))
    try:
        futures = [pool.submit(synthesise_speaker, spec.seed, s, spec.utterances) for s in range(spec.speakers)]
        for future in futures:
            yield future.result()
    finally:  # on an error (or Ctrl-C) in the consumer, drop the queued speakers instead of finishing them
        pool.shutdown(wait=True, cancel_futures=True)


def generate_corpus(
    out: Path,
    spec: SynthSpec = SynthSpec(),
    on_progress: Callable[[int, int], None] | None = None,
    jobs: int | None = None,
) -> Path:
    """Generate ``spec`` into the new folder ``out`` (HW4 layout, answers in ``answers.csv``); return it.

    ``out`` must not exist or be empty (:class:`DataError` otherwise, before any work). ``jobs`` defaults
    to the number of CPUs; the output does not depend on it.
    """
    params = FbankParams()
    info = {"kind": "synthetic", "name": f"synthetic-{spec.key()}", "spec": asdict(spec),
            "features": params.to_json()}
    writer = DatasetWriter(Path(out), params.n_mels, info=info)
    keys = {speaker_name(s): [utterance_key(s, u) for u in range(spec.utterances)] for s in range(spec.speakers)}
    test_keys = choose_test_keys(keys, spec.test_per_speaker, spec.seed)
    total, done = spec.speakers * spec.utterances, 0
    if on_progress is not None:
        on_progress(0, total)
    workers = max(1, min(jobs or os.cpu_count() or 1, spec.speakers))
    with writer, contextlib.closing(_per_speaker(spec, workers)) as per_speaker:
        for speaker, features in enumerate(per_speaker):
            name = speaker_name(speaker)
            for index, feats in enumerate(features):
                key = utterance_key(speaker, index)
                writer.add(name, key, feats, test=key in test_keys)
            done += len(features)
            if on_progress is not None:
                on_progress(done, total)
        return writer.commit()


def default_corpus(home: Path, spec: SynthSpec | None = None, jobs: int | None = None,
                   note: Callable[[str], None] | None = None) -> Path:
    """The embedded corpus (``SynthSpec()`` unless ``spec``), generated once into ``home/synthetic/<key>``;
    ``note`` hears one line when it must be generated.

    A folder whose metadata does not match the spec (incomplete, corrupt, or from elsewhere) is removed
    and regenerated. Two processes may call this at once: the loser of the final rename uses the winner's.
    """
    spec = spec or SynthSpec()
    out = Path(home) / "synthetic" / spec.key()
    if out.exists():
        if _is_complete(out, spec):
            return out
        shutil.rmtree(out, ignore_errors=True)  # incomplete or corrupt: start over
    if note is not None:
        note(f"generating the embedded synthetic corpus in {out} (first use only)")
    try:
        return generate_corpus(out, spec, jobs=jobs)
    except (DataError, OSError):
        # Another process got there first (its rename made ``out`` non-empty): use its corpus.
        if _is_complete(out, spec):
            return out
        raise


def _is_complete(out: Path, spec: SynthSpec) -> bool:
    """Whether ``out`` holds the whole corpus of ``spec`` (JSON files intact, every feature file present)."""
    if not (out / METADATA).is_file():
        return False
    try:
        with (out / METADATA).open(encoding="utf-8") as fh:
            recorded = json.load(fh).get("automel", {}).get("spec")
        dataset = read_dataset(out)
    except (OSError, ValueError, AttributeError, DataError):
        return False
    utterances = dataset.train + dataset.test
    return (
        recorded == asdict(spec)
        and len(dataset.speakers) == spec.speakers
        and len(utterances) == spec.speakers * spec.utterances
        and (out / "answers.csv").is_file()
        and all((out / u.feature_path).is_file() for u in utterances)
    )
