"""Where automel keeps caches, studies and exports: ``--home``, else ``$AUTOMEL_HOME``, else ``./studies``."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "AUTOMEL_HOME"


def resolve_home(explicit: Path | str | None = None) -> Path:
    """Return the home directory, creating it if needed."""
    raw = explicit or os.environ.get(ENV_VAR) or "studies"
    home = Path(raw).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home
