"""One rule for every path a command writes, checked before any work, and files written whole or not at all.

A user names outputs by hand (``--out``, ``--scores``, ``--model``), and a slip of the keyboard must never
cost them a file. So every command checks each output first, with :func:`check_output_file` (or
:func:`check_output_folder`), against what the command reads:

- an output that *is* one of the command's inputs (the same file, after links are resolved; a hard link
  counts too) is refused: ``predict M victim.wav --out victim.wav`` would replace the audio by a CSV;
- an output that lies inside a folder the command reads as a whole (the model folder, the data set, the
  study's folder) is refused: ``predict M --data D --out D/answers.csv`` would plant a file where the
  next command reads (and ``embed M x.wav --out M/model.safetensors`` would destroy the model);
- an output that is a folder, or a device, or whose folder is missing or is a file, is refused.

Each refusal is one :class:`~automel.errors.ConfigError` naming the option and the path. The checks are cheap
(a few ``stat`` calls), so they run before a model is loaded or a feature computed.

Files are then written by :func:`atomic_file` / :func:`atomic_files`: a temporary file beside the target,
named after this process (``.<name>.<pid>@<host>.<random>``, which :func:`automel.files.sweep_leftovers`
recognises once the process is dead), renamed into place. A failed write leaves the previous file, if any,
and nothing else.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from automel.errors import ConfigError, DiskError, option_named
from automel.files import current_umask, honour_umask, owned_tempdir, owner, sweep_leftovers

__all__ = ["Inside", "atomic_file", "atomic_files", "atomic_folder", "check_output_file", "check_output_folder"]

Inside = tuple[str, Path]  # ("the model folder", Path("run")): a folder the command reads, in words


def check_output_file(path: Path | str, option: str = "", *, inputs: Iterable[Path | str] = (),
                      inside: Iterable[Inside] = (), example: str | None = None, parents: bool = False) -> Path:
    """``path`` as given, after checking it can be written without harm; :class:`ConfigError` otherwise.

    ``inputs``: files the command reads (the output may not be one of them); ``inside``: folders it reads
    as a whole (the output may not lie in one). ``option`` (the parameter ``"out"``, shown in backticks, or a
    flag ``"--out"``: :func:`automel.errors.option_named`) names the path in the message;
    ``example`` (``"output.csv"``) is the file name suggested when the path is a folder. ``parents``: a
    missing folder is fine (the writer creates it, as the library's writers do), but never a file on the way.
    """
    path = Path(path).expanduser()
    label = f"{option_named(option)} {path}" if option else str(path)
    _not_inside(path, label, inside)
    if path.is_dir():
        such = f", such as {path / example}" if example else ""
        raise ConfigError(f"{label}: is a folder; give a file name{such}")
    if os.path.exists(path) and not path.is_file():
        raise ConfigError(f"{label}: is not a regular file (a device, a pipe or a socket); name a file to write")
    _not_an_input(path, label, inputs)
    _parent_is_a_folder(path, label, option, parents)
    return path


def check_output_folder(path: Path | str, option: str = "", *, inside: Iterable[Inside] = ()) -> Path:
    """``path`` as given, after checking a folder can be made or filled there; :class:`ConfigError` otherwise.

    The folder itself may be missing (it is created, with its parents), but nothing on the way may be a file,
    and it may not lie inside a folder the command reads (``inside``).
    """
    path = Path(path).expanduser()
    label = f"{option_named(option)} {path}" if option else str(path)
    _not_inside(path, label, inside)
    if os.path.exists(path) and not path.is_dir():
        raise ConfigError(f"{label}: is a file, not a folder; name a folder to write into")
    blocker = _nearest_existing(path)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"{label}: {blocker} is a file, not a folder")
    return path


def _resolved(path: Path) -> Path:
    """``path`` absolute, with every link on the way resolved (the parts that exist)."""
    return Path(os.path.realpath(path))


def _not_inside(path: Path, label: str, inside: Iterable[Inside]) -> None:
    target = _resolved(path)
    for what, folder in inside:
        root = _resolved(Path(folder))
        if target == root:
            raise ConfigError(f"{label}: is {what} {folder}, which this command reads; write elsewhere")
        if target.is_relative_to(root):
            raise ConfigError(f"{label}: lies inside {what} {folder}, which this command reads; "
                              "write it elsewhere")


def _not_an_input(path: Path, label: str, inputs: Iterable[Path | str]) -> None:
    """Refuse ``path`` when it is an existing file that is also an input (same device and inode)."""
    try:
        out = os.stat(path)
    except OSError:
        return  # a new file cannot be an input (a broken link is replaced, not followed)
    for given in inputs:
        try:
            other = os.stat(given)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (out.st_dev, out.st_ino):
            same = "" if Path(os.path.abspath(given)) == Path(os.path.abspath(path)) else f" (the same file as {given})"
            raise ConfigError(f"{label}: is one of this command's inputs{same}; writing it would replace it, "
                              "so choose another file")


def _nearest_existing(path: Path) -> Path | None:
    current = Path(os.path.abspath(path))
    while not os.path.lexists(current):
        if current.parent == current:
            return None
        current = current.parent
    return current


def _parent_is_a_folder(path: Path, label: str, option: str, parents: bool) -> None:
    parent = Path(os.path.abspath(path)).parent
    if parent.is_dir():
        return
    blocker = _nearest_existing(parent)
    if blocker is not None and not blocker.is_dir():
        raise ConfigError(f"{label}: {blocker} is a file, not a folder")
    if parents:
        return
    raise ConfigError(f"{label}: folder {parent} does not exist; create it first or choose another "
                      f"{option_named(option) if option else 'path'}")


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to fill; renamed onto ``path`` on success, removed otherwise.

    The result gets the mode a new file gets under the umask, whatever the writer did (safetensors makes its
    files private). A failed rename is a :class:`DiskError` or :class:`ConfigError` naming ``path``.
    """
    with atomic_files([path]) as (tmp,):
        yield tmp


@contextmanager
def atomic_files(paths: Sequence[Path]) -> Iterator[list[Path]]:
    """Temporary files beside each of ``paths`` to fill; on success all are renamed into place, else none.

    A rename that fails part-way puts back what the earlier ones replaced (or removes what they created),
    so an ``emb.npy`` never appears without its ``emb.ids.txt``, nor a stale one beside a new one.
    """
    paths = [Path(p) for p in paths]
    with ExitStack() as stack:
        temps = [stack.enter_context(_temporary(p)) for p in paths]
        yield temps
        for tmp in temps:
            os.chmod(tmp, _new_file_mode())
        _rename_all(temps, paths)


@contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    """A new empty file ``.<name>.<pid>@<host>.<random>`` beside ``path``; removed on the way out if left."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_leftovers(path)
        while True:
            tmp = path.with_name(f".{path.name}.{owner()}.{secrets.token_hex(4)}")
            try:
                with tmp.open("x"):
                    break
            except FileExistsError:
                continue
    except OSError as exc:
        raise _write_error(exc, path) from None
    try:
        yield tmp
    finally:
        if os.path.lexists(tmp):
            tmp.unlink()


def _new_file_mode() -> int:
    """The mode a new file gets under the umask (the writer, such as safetensors, may have made it private)."""
    return 0o666 & ~current_umask()


def _rename_all(temps: list[Path], paths: list[Path]) -> None:
    """Rename each temporary file onto its path; undo the earlier renames if a later one fails."""
    done: list[tuple[Path, Path | None]] = []  # (path, the hard-linked copy of what it replaced)
    try:
        for tmp, path in zip(temps, paths, strict=True):
            kept = _keep(path) if len(paths) > 1 else None
            try:
                os.replace(tmp, path)
            except OSError:
                if kept is not None:
                    kept.unlink()
                raise
            done.append((path, kept))
    except OSError as exc:
        for path, kept in reversed(done):
            try:
                if kept is not None:
                    os.replace(kept, path)
                else:
                    path.unlink()
            except OSError:
                continue
        raise _write_error(exc, paths[len(done)]) from None
    finally:
        for _, kept in done:
            if kept is not None and os.path.lexists(kept):
                kept.unlink()


def _keep(path: Path) -> Path | None:
    """A hard link to the file at ``path`` (to put back if a later rename fails), or None when there is none."""
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
    except OSError:
        return None
    kept = path.with_name(f".{path.name}.{owner()}.{secrets.token_hex(4)}")
    try:
        os.link(path, kept)
    except OSError:
        return None  # a file system without hard links: the earlier file cannot be put back
    return kept


def _write_error(exc: OSError, path: Path) -> Exception:
    """A disk fault as :class:`DiskError`; anything else (a folder in the way) as one :class:`ConfigError` line."""
    fault = DiskError.find(exc, path.parent)
    if fault is not None:
        return fault
    return ConfigError(f"{path}: cannot write ({exc.strerror or exc})")


@contextmanager
def atomic_folder(out: Path, replace: bool = False, needed: int | None = None) -> Iterator[Path]:
    """A temporary folder beside ``out`` to fill; on success it takes ``out``'s place whole.

    An existing non-empty ``out`` is refused unless ``replace``; it stays intact until the rename, and the
    temporary folder is removed if filling it fails. A full or read-only disk (checked first against
    ``needed`` bytes, when given) ends in a :class:`DiskError` naming ``out``'s folder. Leftovers of killed
    processes beside ``out`` are cleared first (:func:`sweep_leftovers`).
    """
    out = check_output_folder(Path(out).resolve())  # a file in the way is one line, not a traceback
    if out.exists() and any(out.iterdir()) and not replace:
        raise ConfigError(f"{out}: already exists and is not empty; choose another `out`")
    with DiskError.guard(out.parent, needed):
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = owned_tempdir(out)
    try:
        with DiskError.guard(out.parent):  # inside: it must see the full disk before the cleanup frees it
            try:
                yield tmp
            except DiskError as exc:  # a guarded write inside (a submission) names the temporary folder
                if exc.path is None or not Path(str(exc.path)).is_relative_to(tmp):
                    raise
                raise DiskError(exc.kind, out.parent, exc.needed, DiskError.free_bytes(out.parent)) from exc
            honour_umask(tmp)
            if out.exists():
                old = tmp.with_name(f".{out.name}.{owner()}.old")
                shutil.rmtree(old, ignore_errors=True)
                out.rename(old)
                tmp.rename(out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
