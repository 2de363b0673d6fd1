"""``--noise DIR`` and ``--rir DIR`` of ``train`` and ``search``: recorded noise and room responses for augmentation."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from automel.cli._common import console

if TYPE_CHECKING:
    from automel.train.config import RunSettings
    from automel.train.run import Workspace

NoiseOption = Annotated[Path | None, typer.Option("--noise", show_default=False,
    help="A folder of noise recordings (any audio: MUSAN, DEMAND, your own) that train.noise_aug mixes in; "
         "converted once with the data set's front end and cached under the home.")]
RirOption = Annotated[Path | None, typer.Option("--rir", show_default=False,
    help="A folder of recorded room impulse responses that train.reverb_aug uses beside its generated rooms; "
         "converted once like --noise.")]


def check_bank_folders(noise: Path | None, rir: Path | None) -> None:
    """Refuse a missing or empty ``--noise``/``--rir`` folder at once (:class:`DataError`, one line naming it)."""
    from automel.data.augment.banks import check_folders

    check_folders(noise, rir)


def with_banks(settings: RunSettings, params: Mapping[str, Any], noise: Path | None, rir: Path | None,
               work: Workspace, home: Path) -> RunSettings:
    """``settings`` with the converted banks of ``--noise`` and ``--rir`` (converted now, or from the cache).

    Says what each bank holds, and when the level that would use it is off; the library's notes (a front end
    assumed, files skipped) reach stderr through the ``automel`` logger.
    """
    from automel.data.augment.banks import NOISE, RIR, bank_note, prepare_bank
    from automel.data.augment.mel import FrontEnd
    from automel.train.config import TrainParams

    if noise is None and rir is None:
        return settings
    train = TrainParams.from_params(params)
    frontend = FrontEnd.of(work.store.dataset.info, work.store.n_mels)
    arrays: dict[str, str] = {}
    for kind, folder, level, knob in ((NOISE, noise, train.noise_aug, "train.noise_aug"),
                                      (RIR, rir, train.reverb_aug, "train.reverb_aug")):
        if folder is None:
            continue
        bank = prepare_bank(kind, folder, frontend, home)
        arrays[kind] = str(bank.array)
        unused = f"; {knob} is off, so it is not used" if level == "off" else ""
        console.print(escape(bank_note(bank) + unused), highlight=False, soft_wrap=True)
    return dataclasses.replace(settings, noise_bank=arrays.get(NOISE), rir_bank=arrays.get(RIR))
