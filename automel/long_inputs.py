"""Long inputs in overlapping windows: inference time and memory grow linearly with an utterance's length.

An encoder's cost grows with the frames it sees at once (a Transformer's attention quadratically: a
two-hour WAV never finished; a TDNN peaked at 4.9 GB). An utterance longer than two windows is cut into
windows with 50 % overlap, the last one ending on the last frame; the windows run as ordinary utterances
and their outputs are averaged back into one per utterance: probabilities as they are (the mean of
distributions is one), embeddings L2-normalised again after the mean (each window's is unit length, so
every window weighs the same). Utterances up to two windows run whole, exactly as before.

The window comes from the training crop (``train.segment_len`` in ``config.json``): four crops, kept
between 3 and 10 seconds (at the 10 ms hop), 5.12 s for the default 128-frame crop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["MAX_WINDOW", "MIN_WINDOW", "merge_windows", "split_long", "window_frames"]

MIN_WINDOW, MAX_WINDOW = 300, 1000  # frames
CROPS_PER_WINDOW = 4
DEFAULT_SEGMENT = 128  # automel.train.config.TrainParams.segment_len's default


def window_frames(params: Mapping[str, Any]) -> int:
    """The window length in frames for a model trained with ``params`` (see the module's docstring)."""
    segment = params.get("train.segment_len", DEFAULT_SEGMENT)
    if isinstance(segment, bool) or not isinstance(segment, int | float) or segment != segment:
        segment = DEFAULT_SEGMENT
    return int(min(MAX_WINDOW, max(MIN_WINDOW, CROPS_PER_WINDOW * segment)))


def split_long(features: Sequence[np.ndarray], window: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``(pieces, owner)``: each utterance whole when it has at most ``2 * window`` frames, else its windows
    (views, not copies); ``owner[k]`` is the utterance that piece ``k`` belongs to."""
    hop = max(1, window // 2)
    pieces: list[np.ndarray] = []
    owner: list[int] = []
    for index, frames in enumerate(features):
        length = frames.shape[0]
        if length <= 2 * window:
            pieces.append(frames)
            owner.append(index)
            continue
        starts = list(range(0, length - window + 1, hop))
        if starts[-1] + window < length:
            starts.append(length - window)  # the tail gets a window of its own
        pieces += [frames[s:s + window] for s in starts]
        owner += [index] * len(starts)
    return pieces, np.asarray(owner, dtype=np.int64)


def merge_windows(outputs: np.ndarray, owner: np.ndarray, count: int, normalise: bool) -> np.ndarray:
    """``(count, D)``: the mean of each utterance's piece outputs ``outputs (K, D)``; L2-normalised again
    when ``normalise`` (embeddings). An utterance that ran whole gets its output unchanged."""
    if len(owner) == count:  # nothing was split: no arithmetic, bit-identical to a whole run
        return outputs
    sums = np.zeros((count, outputs.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, outputs.astype(np.float64))
    merged = sums / np.bincount(owner, minlength=count)[:, None]
    if normalise:
        merged /= np.maximum(np.linalg.norm(merged, axis=1, keepdims=True), 1e-12)
    single = np.bincount(owner, minlength=count) == 1
    merged[single] = outputs[np.searchsorted(owner, np.flatnonzero(single))]
    return merged.astype(np.float32)
