"""``automel.refit`` and ``automel.export`` as a notebook calls them (the commands ``refit`` and ``export``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import automel
from automel.errors import ConfigError, StudyError


def test_export_keeps_a_refit_and_only_adds_formats(old_home: Path, old_data: Path) -> None:
    best = old_home / "old" / "best"
    refit = automel.refit("old", steps=2, data=old_data, adapt="none", home=old_home, device="cpu")
    assert refit.kind == "refit" and refit.path == best and [m["trial"] for m in refit.members] == [4]
    weights = (best / "model.safetensors").read_bytes()
    kept = automel.export("old", data=old_data, home=old_home)
    assert (kept.action, kept.kind, kept.held) == ("kept", "refit", "the refit export of trial 4")
    added = automel.export("old", formats=["torchscript"], data=old_data, home=old_home)
    assert added.action == "added" and added.added["torchscript"] == best / "model.ts"
    assert (best / "model.safetensors").read_bytes() == weights
    replaced = automel.export("old", 4, data=old_data, adapt="none", home=old_home)
    assert (replaced.action, replaced.replaced, replaced.valid_acc) == ("exported", "the refit export of trial 4", 0.25)
    assert json.loads((best / "export.json").read_text())["kind"] == "trial"


def test_export_to_a_folder_of_ones_own(old_home: Path, old_data: Path, tmp_path: Path) -> None:
    done = automel.export("old", out=tmp_path / "mine", data=old_data, adapt="none", home=old_home)
    assert done.path == tmp_path / "mine" and (done.path / "output.csv").is_file()
    with pytest.raises(ConfigError, match=r"`out` .* lies inside the trial weights of study 'old'"):
        automel.export("old", out=old_home / "old" / "artifacts" / "x", data=old_data, home=old_home)


def test_bad_arguments_are_one_line_naming_the_parameter(old_home: Path) -> None:
    with pytest.raises(ConfigError, match="`trial` must be a whole number"):
        automel.export("old", "4", home=old_home)  # type: ignore[arg-type]
    with pytest.raises(StudyError, match="has no trial 9"):
        automel.export("old", 9, home=old_home)
    with pytest.raises(StudyError, match="no study 'nope'"):
        automel.refit("nope", home=old_home)
    with pytest.raises(ConfigError, match="`steps` must be a whole number of at least 1"):
        automel.refit("old", steps=0, home=old_home)
    front = automel.api.pareto_front("old", home=old_home)
    assert [row.trial for row in front] == [4]
    with pytest.raises(StudyError, match="trial 0 is not on the Pareto front"):
        automel.export("old", 0, pareto=True, home=old_home)
