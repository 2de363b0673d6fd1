"""Choosing what is exported: a trial by number, the distinct best, the prior when every trial is at chance."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch

from automel.engine.artifacts import artifact_store
from automel.engine.finish.select import choose_members, distinct_best, pick_trial
from automel.engine.handle import StudyHandle
from automel.errors import StudyError


def test_pick_trial_names_what_is_wrong(old_study: tuple[StudyHandle, optuna.Study]) -> None:
    _, study = old_study
    assert pick_trial(study, None).number == 4 and pick_trial(study, 4).number == 4
    with pytest.raises(StudyError, match="has no trial 9"):
        pick_trial(study, 9)
    with pytest.raises(StudyError, match="trial 0 is PRUNED, not COMPLETE"):
        pick_trial(study, 0)


def test_the_candidates_are_the_complete_trials_with_weights(old_study: tuple[StudyHandle, optuna.Study],
                                                             old_data: Path) -> None:
    handle, study = old_study
    assert [t.number for t in distinct_best(study, artifact_store(handle.artifacts))] == [4]
    lines: list[str] = []
    members, scores = choose_members(handle, study, handle.workspace(study, old_data), ensemble_size=3, refit=False,
                                     fixed_steps=None, device=torch.device("cpu"), note=lines.append, deadline=None)
    assert [(m.trial.number, m.weight) for m in members] == [(4, 1.0)] and scores == {}
    assert members[0].model is not None and members[0].record is not None
    assert any("at chance" in line for line in lines)  # 25 % of 8 validation utterances among 4 speakers
