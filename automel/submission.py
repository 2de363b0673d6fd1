"""A submission: ``Id,Category`` rows (HW4's ``output.csv``), written atomically."""

from __future__ import annotations

import csv
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from automel.errors import DiskError
from automel.files import owner, sweep_leftovers

SUBMISSION = "output.csv"


def write_submission_rows(path: Path, rows: Iterable[tuple[str, str]]) -> None:
    """Write ``Id,Category`` rows atomically (temporary file, then rename), with the umask's mode."""
    path = Path(path)
    sweep_leftovers(path)
    tmp = path.with_name(f".{path.name}.{owner()}.{secrets.token_hex(4)}")
    try:
        with DiskError.guard(path.parent):
            with tmp.open("x", newline="", encoding="utf-8") as fh:  # "x": the umask applies, as to any new file
                writer = csv.writer(fh)
                writer.writerow(["Id", "Category"])
                writer.writerows(rows)
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def submission_rows(predictions: np.ndarray, paths: Iterable[str], speakers: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(p, speakers[int(k)]) for p, k in zip(paths, predictions.tolist(), strict=True)]
