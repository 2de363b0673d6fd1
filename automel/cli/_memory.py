"""The command's memory allocator: freed large tensors go back to the system (glibc only).

glibc serves an allocation above its mmap threshold (128 kB at start) with its own ``mmap`` and returns it
on ``free``; but each such free raises the threshold to that size (up to 32 MB), so from then on blocks of
that size come from the heap, where freed memory stays. Validation and prediction over full-length
utterances make batches of every size, so a process's RSS climbed by gigabytes it no longer used
(``bench/scale.py``: 3.7 GB after calibration at 600 speakers, 6.1 GB at the peak). A fixed threshold
stops the climb: blocks of 16 MB and more (a 32k-frame batch's activations) are always mapped and
unmapped, while a training step's smaller tensors still reuse the heap. With it: 1.5 GB after
calibration, 3.4 GB at the peak (BENCHMARKS.md, "The whole job from 64 to 600 speakers").

Only the ``automel`` command does this, for its own process (workers are ``automel worker`` processes):
a library imported into a notebook never changes the process's allocator.
"""

from __future__ import annotations

import ctypes
import os
import sys

MMAP_THRESHOLD = 16 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
ENV = "MALLOC_MMAP_THRESHOLD_"  # glibc's own tunable: a user's setting wins


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD`; False where there is no glibc or the user
    set ``MALLOC_MMAP_THRESHOLD_`` themselves."""
    if not sys.platform.startswith("linux") or ENV in os.environ:
        return False
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):  # not glibc (musl): its allocator is left as it is
        return False
