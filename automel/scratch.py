"""Each command's temporary files in one folder of its own, which the next command clears if it was killed.

Trial weights are uploaded to the artifact store from a temporary folder, and downloaded into one for an
export or a refit (``tempfile.TemporaryDirectory``, in ``/tmp``). A ``kill -9`` leaves those behind, named
at random, where nothing would ever find them again. So every command (:func:`automel.cli._common.handle_errors`)
runs inside :func:`process_scratch`: ``tempfile``'s folder becomes ``/tmp/automel-<pid>@<host>.<random>``
(private, mode 700) for the command's length, and is removed at its end. A command starting later removes
such folders of this user whose process, on this machine, no longer runs (:func:`sweep_scratch`).
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from automel.files import alive, owner

__all__ = ["PREFIX", "process_scratch", "sweep_scratch"]

PREFIX = "automel-"
log = logging.getLogger(__name__)
_active: list[Path] = []


@contextlib.contextmanager
def process_scratch() -> Iterator[Path | None]:
    """Run the block with ``tempfile``'s folder set to a new private folder of this process (see the module
    docstring); nested calls share the outer one. Yields the folder, or None when none could be made (a
    full or read-only ``/tmp``: the command then works as before)."""
    if _active:
        yield _active[-1]
        return
    base = Path(tempfile.gettempdir())
    sweep_scratch(base)
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (some containers)
        user = str(os.getuid())
    # torch.compile's cache sits in the temporary folder by default; keep it where it was, across commands.
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(base / f"torchinductor_{user}"))
    try:
        folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{owner()}.", dir=base))
    except OSError:
        yield None
        return
    previous = tempfile.tempdir
    tempfile.tempdir = str(folder)
    _active.append(folder)
    try:
        yield folder
    finally:
        _active.remove(folder)
        tempfile.tempdir = previous
        shutil.rmtree(folder, ignore_errors=True)


def sweep_scratch(base: Path | None = None) -> list[Path]:
    """Remove the scratch folders in ``base`` (default: the temporary folder) that this user's processes of
    this machine left when they were killed; return them. Live processes', other users' and other
    machines' folders are left alone."""
    base = Path(base or tempfile.gettempdir())
    host, uid = socket.gethostname(), os.getuid()
    removed = []
    try:
        entries = [e for e in base.iterdir() if e.name.startswith(PREFIX)]
    except OSError:
        return []
    for entry in entries:
        who, _, _ = entry.name[len(PREFIX):].rpartition(".")
        pid, _, where = who.partition("@")
        try:
            if (where != host or not pid.isdigit() or alive(int(pid)) or entry.is_symlink()
                    or not entry.is_dir() or entry.stat().st_uid != uid):
                continue
            shutil.rmtree(entry)
        except OSError:
            continue
        removed.append(entry)
        log.debug("removed %s, left by process %s (no longer running)", entry, pid)
    return removed
