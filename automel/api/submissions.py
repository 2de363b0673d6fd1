"""``automel.api.predict``: a model's submission (``Id,Category``) for a data set's test utterances, as
``automel predict MODEL --data DIR`` writes it. Files and arrays are predicted by :meth:`Model.predict`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from automel.api._common import PathLike, check_callback
from automel.api.models import Model

__all__ = ["Submission", "predict", "speaker_difference"]


@dataclass(frozen=True)
class Submission:
    """A written submission: ``rows`` ``(Id, Category)`` in ``testdata.json``'s order, in the file ``path``."""

    path: Path
    data: Path  # the data set whose test utterances were predicted
    rows: list[tuple[str, str]] = field(repr=False)
    adaptation: str | None = None  # what the model adapted its statistics to, in words (None: it did not)
    warning: str | None = None  # the data set's speakers differ from the model's (allowed), in words

    def __len__(self) -> int:
        return len(self.rows)


def predict(model: PathLike | Model, data: PathLike | None = None, out: PathLike = "output.csv", *,
            adapt: str = "auto", allow_unknown_speakers: bool = False, device: str = "auto",
            home: PathLike | None = None, progress: Callable[[str], None] | None = None) -> Submission:
    """Predict the test utterances (``testdata.json``) of data set ``data`` (default: the one the model was
    trained on) with ``model`` (a run directory, an export, an ensemble, or a loaded :class:`Model`) and write
    the HW4 submission ``out`` (``Id,Category``), atomically.

    ``adapt``: ``"auto"`` (as the model was exported), ``"none"``, ``"test"`` (the feature and BatchNorm
    statistics of the test utterances) or a folder of unlabelled data (:mod:`automel.adapt`); a loaded model
    is adapted in a copy, never in place. ``allow_unknown_speakers``: predict even when the data set's speakers
    differ from the model's (the labels are the model's; :attr:`Submission.warning` says how they differ).
    ``progress`` hears the warning and the adaptation as lines.

    :class:`~automel.errors.ConfigError` for an ``out`` that would overwrite an input or lies in the model
    folder or the data set, or a bad ``adapt`` (both before the model is loaded); :class:`~automel.errors.DataError`
    for a data set whose speakers or features do not fit the model.
    """
    from automel.adapt import adapt_for_prediction, check_adapt, copy_module
    from automel.adapt import describe as describe_adaptation
    from automel.arguments import check_flag, check_path, check_text
    from automel.data.layout import read_dataset
    from automel.data.store import open_store
    from automel.errors import ConfigError, DataError
    from automel.home import resolve_home
    from automel.inference import SpeakerInference
    from automel.model_config import check_compatible
    from automel.model_folder import load_run
    from automel.outputs import Inside, check_output_file
    from automel.submission import write_submission_rows
    from automel.train.device import select_device
    from automel.train.fit import test_submission

    folder = model.path if isinstance(model, Model) else check_path(model, "model") or Path(model)
    target = check_path(out, "out") or Path(out)
    data_root = check_path(data, "data", optional=True)
    home_dir = check_path(home, "home", optional=True)
    check_flag(allow_unknown_speakers, "allow_unknown_speakers")
    check_text(device, "device")
    check_callback(progress, "progress")
    reads: list[Inside] = [("the model folder", folder)]
    check_output_file(target, "out", inside=reads, example="output.csv")  # before the model is loaded
    check_adapt(adapt, "adapt", auto=True)
    if isinstance(model, Model):  # adapting changes statistics: the caller's model stays as it was
        net, record = copy_module(model.inference.model), model.inference.record
    else:
        net, record = load_run(folder)
    root = data_root or Path(record.dataset.get("root", ""))
    if data_root is None and not root.is_dir():
        raise ConfigError(f"{folder}: its data set {root} is gone; pass `data`")
    check_output_file(target, "out", inside=[*reads, ("the data set", root)])  # D/answers.csv would score 100 %
    differ, detail = speaker_difference(record.speakers, read_dataset(root).speakers)
    if differ and not allow_unknown_speakers:
        raise DataError(f"{root}: {differ} speakers differ from the model's in {folder} ({detail}); "
                        "pass `allow_unknown_speakers` to predict with the model's speakers anyway")
    warning = (f"{differ} speakers differ between {root} and the model ({detail}); predictions name the "
               f"model's {len(record.speakers)} speakers only") if differ else None
    if warning is not None and progress is not None:
        progress(f"warning: {warning}")
    where = resolve_home(home_dir)
    store = open_store(root, where)
    check_compatible(record, store.n_mels, root)
    if not store.dataset.test:
        raise ConfigError(f"{root}: has no test utterances (testdata.json) to predict")
    torch_device = select_device(device)
    adaptation = adapt_for_prediction(net, record.extra, store, adapt, where, torch_device,
                                      SpeakerInference(net, record, folder).features)
    described = describe_adaptation(adaptation) if adaptation is not None else None
    if described is not None and progress is not None:
        progress(described)
    rows = test_submission(net, store, record.speakers, torch_device)
    try:
        write_submission_rows(target, rows)  # atomic: a failed write leaves nothing behind
    except OSError as exc:
        raise ConfigError(f"{target}: cannot write the submission ({exc.strerror or exc})") from None
    return Submission(path=target, data=root, rows=rows, adaptation=described, warning=warning)


def speaker_difference(model: tuple[str, ...], data: tuple[str, ...]) -> tuple[int, str]:
    """How many speakers are in only one of the two sets, and which, in words (``0, ""`` when they agree)."""
    unknown = sorted(set(data) - set(model))
    absent = sorted(set(model) - set(data))
    parts = [f"{len(names)} only in the {where}, e.g. {names[0]}"
             for names, where in ((unknown, "data set"), (absent, "model")) if names]
    return len(unknown) + len(absent), "; ".join(parts)
