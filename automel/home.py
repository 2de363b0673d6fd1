"""Where automel keeps caches, studies and exports: ``--home``, else ``$AUTOMEL_HOME``, else ``./studies``.

A study named NAME lives in the home as ``NAME.db`` (its default storage) and ``NAME/`` (artifacts, logs,
the export). :func:`check_study_name` is the one place that decides whether a name is safe for that; every
path that turns a study name into a path, or opens or creates a study, goes through it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from automel.errors import ConfigError

ENV_VAR = "AUTOMEL_HOME"
MAX_STUDY_NAME = 100  # NAME.db-journal and friends stay far below the file systems' 255 bytes
# One plain file name: no separator, no "..", no hidden file, nothing a shell or a command line mistakes for
# an option (a leading "-").
_STUDY_NAME = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9._-]{{0,{MAX_STUDY_NAME - 1}}}")


def resolve_home(explicit: Path | str | None = None) -> Path:
    """Return the home directory, creating it if needed.

    A home that is a file (``AUTOMEL_HOME=~/notes.txt``), or lies under one, is a :class:`ConfigError`
    naming the path and where it came from, before anything is read or written.
    """
    raw = explicit or os.environ.get(ENV_VAR) or "studies"
    source = "`home`" if explicit else f"${ENV_VAR}" if os.environ.get(ENV_VAR) else "the default home"
    try:
        home = Path(raw).expanduser().resolve()
        if home.exists() and not home.is_dir():
            raise ConfigError(f"{source} {home}: is a file, not a folder; choose a folder for automel's home")
        home.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{source} {raw}: a part of this path is a file, not a folder; choose a folder for "
                          "automel's home") from None
    except ValueError as exc:  # a NUL byte in the path
        raise ConfigError(f"{source} {str(raw)!r}: not a usable path ({exc})") from None
    except RuntimeError as exc:  # a symbolic-link loop
        raise ConfigError(f"{source} {raw}: cannot be resolved ({exc})") from None
    return home


def check_study_name(name: str) -> str:
    """``name`` if it is a valid study name, else :class:`ConfigError` naming it.

    Valid: 1 to :data:`MAX_STUDY_NAME` letters, digits, ``.``, ``_`` and ``-``, not starting with ``.`` or
    ``-``. So ``<home>/<name>.db`` and ``<home>/<name>/`` always lie inside the home: ``../x``, ``/tmp/x``,
    ``.`` and ``..`` are refused.
    """
    if not isinstance(name, str) or not _STUDY_NAME.fullmatch(name):
        shown = name if not isinstance(name, str) or len(name) <= 200 else name[:197] + "..."
        raise ConfigError(f"invalid study name {shown!r}: use up to {MAX_STUDY_NAME} letters, digits, '.', '_' "
                          f"and '-', not starting with '.' or '-'")
    return name
