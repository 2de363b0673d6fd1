"""The ``automel`` command fixes glibc's mmap threshold for its own process: freed large blocks go back."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = r'''
import sys
import numpy as np
from automel.cli._memory import fix_mmap_threshold

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024

if sys.argv[1] == "import":
    import automel.api  # noqa: F401
fixed = fix_mmap_threshold() if sys.argv[1] == "fixed" else False
a = np.ones(20 << 20, dtype=np.uint8); del a  # with glibc's defaults, this free raises the threshold to 20 MB
base = rss_mb()
b = np.ones(20 << 20, dtype=np.uint8); del b  # ... so this block comes from the heap, and stays there
print(fixed, round(rss_mb() - base, 1))
'''


def _probe(mode: str, **env: str) -> tuple[str, float]:
    clean = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    return out[0], float(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_freed_large_block_goes_back_to_the_system_only_when_fixed() -> None:
    fixed, kept = _probe("fixed")
    default, grown = _probe("default")
    assert fixed == "True" and kept < 5
    assert default == "False" and grown > 15  # what the fix is for
    respected, _ = _probe("fixed", MALLOC_MMAP_THRESHOLD_="131072")  # the user's own setting wins
    assert respected == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_importing_the_library_leaves_the_allocator_alone() -> None:
    imported, grown = _probe("import")  # ``import automel.api`` (a notebook), without the command's main
    assert imported == "False" and grown > 15
