"""automel from Python (a notebook, a script): search a data set, read the leaderboard, load a model, use it.

>>> import automel
>>> result = automel.search(data="my-set", time_limit="10m", progress=print)
>>> result.leaderboard()
>>> model = automel.load(result.path)        # or automel.load("studies/my-set/best")
>>> model.predict("clip.wav")[0].speaker
>>> model.embed(["a.wav", "b.wav"]).vectors  # (2, E), L2-normalised

Everything the ``automel`` commands do is here, and the commands are thin layers over it:

- :func:`search` (``automel search``), :mod:`~automel.api.searches`;
- :func:`train` (``automel train``), :mod:`~automel.api.training`;
- :func:`load` and :class:`Model` (``predict`` of files, ``embed``, ``verify``), :mod:`~automel.api.models`;
  :func:`predict` (``automel predict MODEL --data DIR``), :mod:`~automel.api.submissions`;
- :func:`leaderboard`, :func:`show` and :func:`report` (``automel show``, ``automel report``),
  :mod:`~automel.api.studies`;
- :func:`refit`, :func:`export` and :func:`pareto_front` (``automel refit``, ``automel export``),
  :mod:`~automel.api.exports`;
- the progress lines of a search's trials, :mod:`~automel.api.progress`.

They raise the typed errors of :mod:`automel.errors` (one line a user can act on, naming parameters in
backticks) and never print or exit; pass ``progress=print`` to see a search's or a training run's progress.
``train`` and ``report`` are reached as ``automel.api.train`` and ``automel.api.report``: ``automel.train``
and ``automel.report`` are the packages that train a model and draw a report.
"""

from __future__ import annotations

from automel.api.exports import ExportOutcome, export, pareto_front, refit
from automel.api.models import Embeddings, Model, load
from automel.api.searches import SearchResult, search
from automel.api.studies import Leaderboard, StudyOverview, TrialSummary, leaderboard, report, show
from automel.api.submissions import Submission, predict
from automel.api.training import TrainHooks, TrainPlan, TrainRun, train

__all__ = ["Embeddings", "ExportOutcome", "Leaderboard", "Model", "SearchResult", "StudyOverview", "Submission",
           "TrainHooks", "TrainPlan", "TrainRun", "TrialSummary", "export", "leaderboard", "load", "pareto_front",
           "predict", "refit", "report", "search", "show", "train"]
