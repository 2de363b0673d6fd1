"""Typed errors. Library code raises these; only the CLI turns them into messages and exit codes.

A message names a user-settable option as the Python API spells its parameter, in backticks ("give it a
longer `time_limit`"): :func:`option_named`. The CLI prints each such name as its flag (``--time-limit``,
:mod:`automel.cli._flags`), so neither a notebook nor a shell user reads about an option they cannot type.
"""

from __future__ import annotations


def option_named(name: str) -> str:
    """How a message names a user-settable option: its Python API parameter in backticks (``"time_limit"``
    → ``"`time_limit`"``), which the CLI's printer shows as its flag (``--time-limit``,
    :mod:`automel.cli._flags`). A name that is already a flag (``"--out"``) or already quoted is kept."""
    return name if name.startswith(("-", "`")) else f"`{name}`"


class AutomelError(Exception):
    """Base class: the message is one line a user can act on."""

    exit_code = 1


class DataError(AutomelError):
    """A data set, feature file, manifest or submission is missing or malformed."""

    exit_code = 2


class PluginError(AutomelError):
    """A plugin is unknown, duplicated, broken or misconfigured."""

    exit_code = 2


class ConfigError(AutomelError):
    """A configuration file or option value is invalid."""

    exit_code = 2


class TrainingError(AutomelError):
    """Training could not go on (e.g. the loss became NaN or inf)."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or inf at ``step``."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"loss became {loss} at step {step}; lower the learning rate or check the data")
        self.step = step
        self.loss = loss


class StudyError(AutomelError):
    """A study is missing, or its frozen settings do not match what was asked."""

    exit_code = 2


class AudioError(DataError):
    """An audio file cannot be decoded, or holds no usable samples (``automel embed``, ``verify``, ``predict``)."""


class FrontendError(ConfigError):
    """A model does not record the audio front end it was trained with, so it cannot take raw audio."""



class DiskError(AutomelError):
    """A write failed, or would fail, because the disk is full, read-only or not writable by this user.

    The message names the place and, when known, the space needed, so the user can free space (or choose
    another folder) and rerun; what was written before stays intact. :meth:`find` recognises the fault in
    any exception's ``__cause__``/``__context__`` chain (an ``OSError``, or SQLite's "database or disk is
    full" behind SQLAlchemy and Optuna); :meth:`guard` checks the room first and names the folder.
    """

    NO_SPACE, READ_ONLY, DENIED = "no space", "read-only", "permission denied"

    def __init__(self, kind: str, path: object = None, needed: int | None = None, free: int | None = None) -> None:
        where = str(path) if path is not None else "the disk"
        if kind == DiskError.NO_SPACE:
            sizes = [f"needed ~{self.megabytes(needed)} MB"] if needed else []
            sizes += [f"{self.megabytes(free)} MB free"] if free is not None else []
            shown = f" ({', '.join(sizes)})" if sizes else ""
            message = f"no space left on {where}{shown}; free some and rerun"
        elif kind == DiskError.READ_ONLY:
            message = f"read-only: {where} is on a read-only file system"
        else:
            message = f"permission denied: {where}"
        super().__init__(message)
        self.kind, self.path, self.needed = kind, path, needed

    @classmethod
    def find(cls, exc: BaseException, path: object = None, needed: int | None = None) -> DiskError | None:
        """The disk fault behind ``exc`` (itself or anything in its cause/context chain), else None.

        ``path`` names the place when the fault carries no file name (a failed ``write``, SQLite); a
        permission error always names its own file (it may be a read).
        """
        import errno

        kinds = {errno.ENOSPC: cls.NO_SPACE, errno.EDQUOT: cls.NO_SPACE, errno.EROFS: cls.READ_ONLY,
                 errno.EACCES: cls.DENIED, errno.EPERM: cls.DENIED}
        seen: set[int] = set()
        todo: list[BaseException] = [exc]
        while todo:
            current = todo.pop(0)
            if id(current) in seen:
                continue
            seen.add(id(current))
            if isinstance(current, DiskError):
                return current
            kind = kinds.get(current.errno) if isinstance(current, OSError) and current.errno else None
            if kind is None:
                kind = cls._sqlite_fault(current, path)
            elif kind == cls.DENIED or path is None:
                path = getattr(current, "filename", None) or path
            if kind is not None:
                return cls(kind, path, needed if kind == cls.NO_SPACE else None,
                           cls.free_bytes(path) if kind == cls.NO_SPACE else None)
            todo += [e for e in (current.__cause__, current.__context__, getattr(current, "orig", None))
                     if isinstance(e, BaseException)]
        return None

    @classmethod
    def check(cls, path: object, needed: int | None = None) -> None:
        """Raise before writing when ``path`` (or the folder that would hold it) is read-only, not
        writable, or has less than ``needed`` bytes free."""
        import os

        existing = cls.existing(path)
        if existing is None:
            return
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            raise cls(cls.READ_ONLY, path)
        if not os.access(existing, os.W_OK):
            raise cls(cls.DENIED, path)
        free = cls.free_bytes(existing)
        if needed is not None and free is not None and free < needed:
            raise cls(cls.NO_SPACE, path, needed, free)

    @classmethod
    def guard(cls, path: object, needed: int | None = None) -> DiskGuard:
        """``with DiskError.guard(folder, needed):`` checks the room first (:meth:`check`), then turns a
        full or read-only disk inside the block into a DiskError naming ``folder``."""
        return DiskGuard(path, needed)

    @classmethod
    def probe(cls, path: object, needed: int | None = None) -> DiskError | None:
        """After a write failed without saying why: a read-only or (nearly) full file system is the reason."""
        import os

        existing = cls.existing(path)
        if existing is None:
            return None
        try:
            if os.statvfs(existing).f_flag & os.ST_RDONLY:
                return cls(cls.READ_ONLY, path)
        except OSError:
            return None
        free = cls.free_bytes(existing)
        if free is not None and free < 2**20:  # under 1 MiB left: the write ran out of room
            return cls(cls.NO_SPACE, path, needed, free)
        return None

    @staticmethod
    def megabytes(size: int | None) -> str:
        mb = (size or 0) / 2**20
        return f"{mb:.1f}" if mb < 10 else f"{mb:.0f}"

    @staticmethod
    def existing(path: object) -> str | None:
        """``path`` or its nearest existing parent folder."""
        import os

        if path is None:
            return None
        current = os.path.abspath(str(path))
        while not os.path.exists(current):
            parent = os.path.dirname(current)
            if parent == current:
                return None
            current = parent
        return current

    @staticmethod
    def free_bytes(path: object) -> int | None:
        """Bytes free where ``path`` lies (root may also use the blocks reserved for it)."""
        import os

        existing = DiskError.existing(path)
        if existing is None:
            return None
        try:
            stat = os.statvfs(existing)
        except OSError:
            return None
        return (stat.f_bfree if os.geteuid() == 0 else stat.f_bavail) * stat.f_frsize

    @classmethod
    def _sqlite_fault(cls, exc: BaseException, path: object) -> str | None:
        """SQLite's codes for a full or read-only database (its errors carry no errno)."""
        code = getattr(exc, "sqlite_errorcode", None)
        if not isinstance(code, int):
            return None
        primary = code & 0xFF
        if primary == 13:  # SQLITE_FULL
            return cls.NO_SPACE
        if primary == 8:  # SQLITE_READONLY
            return cls.READ_ONLY
        if primary in (10, 14):  # SQLITE_IOERR, SQLITE_CANTOPEN: ask the file system
            probed = cls.probe(path)
            return probed.kind if probed is not None else None
        return None


class DiskGuard:
    """The context manager of :meth:`DiskError.guard`. Other errors, and permission errors (which may be
    reads of the input), pass through unchanged."""

    def __init__(self, path: object, needed: int | None) -> None:
        self.path, self.needed = path, needed

    def __enter__(self) -> None:
        DiskError.check(self.path, self.needed)

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if not isinstance(exc, Exception) or (isinstance(exc, AutomelError) and not isinstance(exc, DiskError)):
            return
        found = DiskError.find(exc, self.path, self.needed)
        if found is None and isinstance(exc, (OSError, RuntimeError)):
            found = DiskError.probe(self.path, self.needed)  # torch and safetensors fail a write without errno
        if found is not None and found.kind != DiskError.DENIED and found is not exc:
            raise found from exc


class Fatal(BaseException):
    """Carries an :class:`AutomelError` through code that catches every ``Exception`` (Optuna's trial loop)
    to end the command with it; the CLI reports ``error``. Raise it only once the state is consistent."""

    def __init__(self, error: AutomelError) -> None:
        super().__init__(str(error))
        self.error = error


class Terminated(KeyboardInterrupt):
    """SIGTERM (sent by Slurm, Kubernetes, systemd, ``timeout``): handled like Ctrl-C; the command exits 143."""


class Interrupted(AutomelError):
    """A search or refit stopped by Ctrl-C or SIGTERM once its state was consistent; the message says how to
    go on. The CLI exits 130 (143 after SIGTERM)."""

    exit_code = 130


class ExportError(AutomelError):
    """A model cannot be written in a deployable format (ONNX, TorchScript), or the format is unknown or its
    optional extra (``automel[onnx]``) is not installed; nothing was written."""

    exit_code = 2
