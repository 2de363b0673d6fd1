"""A search's noise and impulse-response banks: converted once, recorded in the study, used by every trial.

``automel search --noise DIR --rir DIR`` converts the folders with the data set's front end
(:mod:`automel.data.augment.banks`) and records each bank in the study's ``augment_banks`` attribute: the
folder it came from, its fingerprint and the converted array under the home. Like the data set, the banks
belong to the search: a resumed study keeps the ones it began with (no ``--noise`` needed again), and a
study whose trials already ran refuses a different folder. Each trial copies the record onto itself, so
``automel refit`` trains with the banks the trial trained with. Workers read the record from the study and
need the same home (on another machine: a shared folder), where the arrays lie.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, TypedDict

import optuna
from optuna.trial import FrozenTrial, TrialState

from automel.data.augment.banks import NOISE, OPTION, RIR, bank_note, prepare_bank
from automel.data.augment.mel import FrontEnd
from automel.errors import StudyError
from automel.train.fit import Workspace

log = logging.getLogger(__name__)

BANKS_ATTR = "augment_banks"


class BankSettings(TypedDict, total=False):
    """The :class:`~automel.train.config.RunSettings` fields of a run's banks."""

    noise_bank: str
    rir_bank: str


def record_banks(study: optuna.Study, noise: Path | None, rir: Path | None, work: Workspace, home: Path) -> None:
    """Convert the given folders (or take them from the cache) and record them in ``study``.

    :class:`StudyError` when the study's trials already ran with another bank of the same kind.
    """
    given = {kind: folder for kind, folder in ((NOISE, noise), (RIR, rir)) if folder is not None}
    if not given:
        return
    recorded: dict[str, Any] = dict(study.user_attrs.get(BANKS_ATTR) or {})
    frontend = FrontEnd.of(work.store.dataset.info, work.store.n_mels)
    started = any(t.state != TrialState.WAITING for t in study.get_trials(deepcopy=False))
    for kind, folder in given.items():
        bank = prepare_bank(kind, folder, frontend, home)
        log.info(bank_note(bank))
        before = recorded.get(kind)
        if started and (before or {}).get("fingerprint") != bank.fingerprint:
            was = f"{OPTION[kind]} {before['source']}" if before else f"no {OPTION[kind]}"
            raise StudyError(f"study '{study.study_name}' was created with {was}, not {OPTION[kind]} {folder} "
                             "(or the folder changed); use another `study` name for a different search")
        recorded[kind] = {"source": str(bank.source), "fingerprint": bank.fingerprint, "array": str(bank.array)}
    study.set_user_attr(BANKS_ATTR, recorded)


def trial_banks(trial: optuna.Trial, study: optuna.Study) -> BankSettings:
    """:class:`~automel.train.config.RunSettings` keywords for a trial of ``study``, recorded on the trial too."""
    recorded = study.user_attrs.get(BANKS_ATTR) or {}
    if recorded:
        trial.set_user_attr(BANKS_ATTR, recorded)
    return _settings(recorded)


def refit_banks(trial: FrozenTrial) -> BankSettings:
    """:class:`~automel.train.config.RunSettings` keywords for a refit of ``trial``: the banks it trained with."""
    return _settings(trial.user_attrs.get(BANKS_ATTR) or {})


def _settings(recorded: dict[str, Any]) -> BankSettings:
    out = BankSettings()
    for kind in (NOISE, RIR):
        entry = recorded.get(kind)
        if not entry:
            continue
        if not Path(entry["array"]).is_file():
            raise StudyError(f"the study's {kind} bank {entry['array']} (from {OPTION[kind]} {entry['source']}) "
                             "is not on this machine; run with the study's `home`, or rerun `automel search` "
                             f"with {OPTION[kind]} {entry['source']} to convert it again")
        if kind == NOISE:
            out["noise_bank"] = str(entry["array"])
        else:
            out["rir_bank"] = str(entry["array"])
    return out
