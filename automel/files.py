"""Files that appear whole or not at all: temporary folders named after their process, renamed into place.

Everything automel writes for keeps (a run, an export, a prepared data set, the feature cache) is filled in
a hidden temporary folder beside its target, ``.<name>.<pid>@<host>.<random>``, and renamed into place
(:func:`automel.outputs.atomic_folder`, which also checks the target by the output rule; the primitives
it builds on live here, below it).
A process killed half-way leaves only such a folder; the next write to the same target clears it
(:func:`sweep_leftovers`) when its process is dead and was on this machine. What is written gets the modes
the umask allows, as ordinary file creation gives (``mkdtemp`` and safetensors would make it private).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
from pathlib import Path

from automel.errors import DataError

__all__ = ["current_umask", "honour_umask", "owned_tempdir", "owner", "read_user_text",
           "sweep_leftovers"]

log = logging.getLogger(__name__)


def owned_tempdir(out: Path) -> Path:
    """A new empty hidden folder beside ``out``, named after this process, to fill and rename into place.

    Stale leftovers of ``out`` are removed first. The folder gets the umask's mode, as ``mkdir`` gives.
    """
    out = Path(out)
    sweep_leftovers(out)
    while True:
        tmp = out.with_name(f".{out.name}.{owner()}.{secrets.token_hex(4)}")
        try:
            tmp.mkdir(mode=0o777)
        except FileExistsError:
            continue
        return tmp


def sweep_leftovers(out: Path) -> list[Path]:
    """Clear what killed processes of this machine left beside ``out``; return what was removed.

    Their temporary folders (and files) go. An ``out`` that a replace had moved aside, when the new one never
    took its place, is moved back. Leftovers of live processes, or of other machines sharing the folder,
    are left alone. Each is logged.
    """
    out = Path(out)
    prefix, host = f".{out.name}.", socket.gethostname()
    try:
        entries = [e for e in out.parent.iterdir() if e.name.startswith(prefix)]
    except OSError:
        return []
    removed = []
    for entry in sorted(entries):
        owner, _, suffix = entry.name[len(prefix):].rpartition(".")
        pid, _, where = owner.partition("@")
        if where != host or not pid.isdigit() or alive(int(pid)):
            continue
        try:
            if suffix == "old" and not out.exists():
                entry.rename(out)
                log.info("restored %s from %s, which process %s (no longer running) had moved aside", out,
                         entry.name, pid)
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue  # a read-only folder: nothing to clear now, and nothing that misleads
        removed.append(entry)
        log.info("removed %s, left by process %s (no longer running)", entry, pid)
    return removed


def honour_umask(root: Path) -> None:
    """Give ``root`` and everything in it the modes the umask allows: folders ``0o777``, files ``0o666``
    less the umask (``mkdtemp``, ``mkstemp`` and safetensors create them private)."""
    mask = current_umask()
    root = Path(root)
    if root.is_file():
        os.chmod(root, 0o666 & ~mask)
        return
    os.chmod(root, 0o777 & ~mask)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), 0o777 & ~mask)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o666 & ~mask)


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (no window for other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def owner() -> str:
    """``<pid>@<host>``: who made a temporary name."""
    return f"{os.getpid()}@{socket.gethostname()}"


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this machine still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def read_user_text(path: Path, noun: str) -> str:
    """The text of a file the user hands over (a submission, a trial list, a manifest), read as editors and
    spreadsheets save it: UTF-8 with or without a byte-order mark. Anything else is a one-line
    :class:`DataError` naming ``path`` and the ``noun`` it should be (``"trial list"``)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a {noun}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: {noun} not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:  # no permission, a device
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
