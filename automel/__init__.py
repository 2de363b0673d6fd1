"""automel: AutoML for speaker classification on log-mel spectrograms.

The Python API (:mod:`automel.api`) is loaded on first use, so ``import automel`` stays cheap::

    import automel
    result = automel.search(data="my-set", time_limit="10m")
    model = automel.load(result.path)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from automel._version import __version__

__all__ = ["Embeddings", "Leaderboard", "Model", "SearchResult", "__version__", "leaderboard", "load", "search"]

if TYPE_CHECKING:
    from automel.api import Embeddings, Leaderboard, Model, SearchResult, leaderboard, load, search


def __getattr__(name: str) -> Any:  # PEP 562: the API's names, imported when first asked for
    if name in __all__ and name != "__version__":
        from automel import api

        return getattr(api, name)
    raise AttributeError(f"module 'automel' has no attribute {name!r}")
