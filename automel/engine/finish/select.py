"""Step 1 after the search: which trial goes on, or which ensemble of trials (AutoGluon's recipe).

- **Candidates.** The best completed, feasible trials with kept weights, one per distinct configuration.
- **Ensemble.** Caruana's greedy selection on their validation probabilities
  (:func:`automel.ensemble.greedy_ensemble`). It is used only when it beats the best single trial on
  validation accuracy; otherwise the best trial goes on alone.
- **No candidate** (a very short search): the trial that trained furthest is refit instead.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from automel.engine.artifacts import artifact_store, download_trial, has_weights
from automel.engine.budget import above_chance
from automel.engine.constraints import Constraints, feasible_complete, is_feasible
from automel.engine.finish.parts import Member, Note
from automel.engine.finish.refit import ENSEMBLE_MEMBER_LONGER, data_ratio, refit_plan, steps_per_second
from automel.engine.handle import StudyHandle
from automel.errors import StudyError
from automel.model_folder import load_run
from automel.train.fit import Workspace


def pick_trial(study: optuna.Study, number: int | None) -> FrozenTrial:
    """Trial ``number`` of ``study``, which must be complete; the best (feasible) one when ``number`` is None."""
    if number is None:
        try:
            return study.best_trial
        except ValueError:
            limits = Constraints.of_study(study)
            within = f" within its limits ({limits.describe()})" if limits.active else ""
            raise StudyError(f"study '{study.study_name}' has no completed trial{within} to export yet") from None
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise StudyError(f"study '{study.study_name}' has no trial {number}")
    if trials[number].state != TrialState.COMPLETE:
        raise StudyError(f"trial {number} is {trials[number].state.name}, not COMPLETE: nothing to export")
    return trials[number]


def choose_members(handle: StudyHandle, study: optuna.Study, work: Workspace, *, ensemble_size: int, refit: bool,
                   fixed_steps: int | None, device: torch.device, note: Note, deadline: float | None
                   ) -> tuple[list[Member], dict[str, float]]:
    """The best trial alone, or the greedy ensemble of the kept candidates when it validates better; with the
    ensemble's and the best trial's validation scores when an ensemble was considered."""
    store = artifact_store(handle.artifacts)
    candidates = distinct_best(study, store)
    if not candidates:
        return [Member(_furthest(study, refit, note), 1.0)], {}
    if not above_chance(candidates[0].value, len(work.split.valid), work.store.num_classes):
        # Every trial is at chance: their ranking is noise. Trust the prior: the first portfolio entry.
        candidates.sort(key=lambda t: (not t.user_attrs.get("portfolio"), t.number))
        note(f"every trial is at chance on validation; refitting trial {candidates[0].number}, the first "
             f"configuration of the portfolio")
        candidates = candidates[:1]
    size = ensemble_room(candidates[0], work, ensemble_size, refit and fixed_steps is None, deadline)
    if size < ensemble_size:
        note(f"time for {size} long refit{'s' if size > 1 else ''} only: the ensemble may hold at most {size}")
    members = [_with_weights(Member(t, 0.0), store) for t in candidates[: 1 if size == 1 else size * 2]]
    if size > 1 and len(members) > 1 and len(work.split.valid):
        return pick_ensemble(members, work, size, device, note)
    return [dataclasses.replace(members[0], weight=1.0)], {}


def _furthest(study: optuna.Study, refit: bool, note: Note) -> FrozenTrial:
    """No completed trial with kept weights: why, or (when refitting) the trial that trained furthest."""
    limits = Constraints.of_study(study)
    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    if limits.active and not any(is_feasible(t) for t in finished):
        raise StudyError(f"study '{study.study_name}' has no completed trial within its limits "
                         f"({limits.describe()}): every model was over them; loosen them or use other plugins")
    if not refit:
        raise StudyError(f"study '{study.study_name}' has no completed trial to export: none reached the last "
                         f"rung within the time; give it a longer `time_limit` or a smaller `steps_per_trial`")
    leader = best_reached(study)
    note(f"no trial reached the last rung; refitting trial {leader.number}, the furthest")
    return leader


def pick_ensemble(members: list[Member], work: Workspace, size: int, device: torch.device, note: Note
                  ) -> tuple[list[Member], dict[str, float]]:
    """Caruana's selection among ``members`` (best by the study's objective first), kept only when the ensemble
    of its ``size`` heaviest picks validates better than ``members[0]``, both measured on the same probabilities.

    The selection ranks by log-loss, so its first pick need not be the study's best trial: the comparison is
    always against ``members[0]``, the trial the study would export alone, and the line names it.
    """
    from automel.ensemble import greedy_ensemble, mixture_accuracy, predict_proba

    started = time.monotonic()
    probas = [predict_proba(_model(m), work.store, work.split.valid, device) for m in members]
    labels = work.store.labels.numpy()[work.split.valid]
    choice = greedy_ensemble(probas, labels)
    picked = sorted(choice.members, key=lambda i: -choice.weights[i])[:size]
    total = sum(float(choice.weights[i]) for i in picked)
    weights = [float(choice.weights[i]) / total if i in picked else 0.0 for i in range(len(members))]
    ensemble_acc = mixture_accuracy(probas, weights, labels)  # the ensemble as exported: its picks only
    best = members[0].trial.number
    single_acc = mixture_accuracy(probas[:1], [1.0], labels)
    scores = {"ensemble_valid_acc": ensemble_acc, "single_valid_acc": single_acc, "single_trial": best,
              "seconds": round(time.monotonic() - started, 3)}
    versus = f"trial {best} (the study's best single trial)"
    if len(picked) > 1 and ensemble_acc > single_acc:
        chosen = [dataclasses.replace(members[i], weight=weights[i]) for i in picked]
        note(f"ensemble of trials {', '.join(str(m.trial.number) for m in chosen)}: valid accuracy "
             f"{ensemble_acc:.2%} vs {single_acc:.2%} for {versus}")
        return chosen, scores
    note(f"no ensemble: it validates at {ensemble_acc:.2%}, no better than {single_acc:.2%} for {versus}, "
         f"which goes alone")
    return [dataclasses.replace(members[0], weight=1.0)], scores


def ensemble_room(best: FrozenTrial, work: Workspace, ensemble_size: int, timed_refit: bool,
                  deadline: float | None) -> int:
    """How many members the ensemble may have: each one's refit must still be long.

    A refit split between members is shorter for each. Longer training is worth more than averaging
    (the search's short trials gain a lot from it), so a member joins only if every member can still be
    refit for at least ``ENSEMBLE_MEMBER_LONGER`` times its data-scaled steps.
    """
    if not timed_refit or deadline is None:
        return ensemble_size
    base, _ = refit_plan(best, data_ratio(work), None)
    affordable = (deadline - time.monotonic()) * steps_per_second(best) * 0.9
    return max(1, min(ensemble_size, int(affordable // (base * ENSEMBLE_MEMBER_LONGER))))


def _model(member: Member) -> torch.nn.Module:
    assert member.model is not None, "candidates are loaded with their weights"
    return member.model


def distinct_best(study: optuna.Study, store: Any) -> list[FrozenTrial]:
    """Completed, feasible trials with kept weights, best first, one per distinct configuration."""
    seen: set[str] = set()
    out = []
    for trial in sorted(feasible_complete(study), key=lambda t: (-(t.value or 0.0), t.number)):
        key = json.dumps(trial.params, sort_keys=True, default=str)
        if key not in seen and has_weights(store, trial):
            seen.add(key)
            out.append(trial)
    return out


def best_reached(study: optuna.Study) -> FrozenTrial:
    """The trial that got furthest (most steps reported), and among those the most accurate."""
    ranked = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
              if t.intermediate_values and is_feasible(t)]
    if not ranked:
        limits = Constraints.of_study(study)
        within = f" within its limits ({limits.describe()})" if limits.active else ""
        raise StudyError(f"study '{study.study_name}' has no trial that trained far enough to refit{within}")
    return max(ranked, key=lambda t: (max(t.intermediate_values), t.intermediate_values[max(t.intermediate_values)],
                                      -t.number))


def _with_weights(member: Member, store: Any) -> Member:
    with tempfile.TemporaryDirectory() as tmp:
        model, record = load_run(download_trial(store, member.trial, Path(tmp)))
    return dataclasses.replace(member, model=model, record=record)


def trial_weights(handle: StudyHandle, trial: FrozenTrial) -> Member:
    """``trial`` as a member of weight 1, with its kept weights (:class:`StudyError` when they were not kept)."""
    return _with_weights(Member(trial, 1.0), artifact_store(handle.artifacts))
