"""automel: AutoML for speaker classification on log-mel spectrograms.

The Python API (:mod:`automel.api`) is loaded on first use, so ``import automel`` stays cheap::

    import automel
    result = automel.search(data="my-set", time_limit="10m")
    model = automel.load(result.path)

``automel.api.train`` and ``automel.api.report`` are not handed out here: ``automel.train`` and
``automel.report`` are the subpackages that train a model and draw a report, and a name given to both
would change meaning as soon as the subpackage is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from automel._version import __version__

__all__ = ["Embeddings", "ExportOutcome", "Leaderboard", "Model", "SearchResult", "StudyOverview", "Submission",
           "TrainRun", "TrialSummary", "__version__", "export", "leaderboard", "load", "predict", "refit", "search",
           "show"]

if TYPE_CHECKING:
    from automel.api import (
        Embeddings,
        ExportOutcome,
        Leaderboard,
        Model,
        SearchResult,
        StudyOverview,
        Submission,
        TrainRun,
        TrialSummary,
        export,
        leaderboard,
        load,
        predict,
        refit,
        search,
        show,
    )


def __getattr__(name: str) -> Any:  # PEP 562: the API's names, imported when first asked for
    if name in __all__ and name != "__version__":
        from automel import api

        return getattr(api, name)
    raise AttributeError(f"module 'automel' has no attribute {name!r}")
