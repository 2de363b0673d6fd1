"""The ``--noise DIR`` and ``--rir DIR`` options of ``train`` and ``search`` (recorded noise and room responses
for augmentation; :func:`automel.api.train` and the search prepare the banks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

NoiseOption = Annotated[Path | None, typer.Option("--noise", show_default=False,
    help="A folder of noise recordings (any audio: MUSAN, DEMAND, your own) that train.noise_aug mixes in; "
         "converted once with the data set's front end and cached under the home.")]
RirOption = Annotated[Path | None, typer.Option("--rir", show_default=False,
    help="A folder of recorded room impulse responses that train.reverb_aug uses beside its generated rooms; "
         "converted once like --noise.")]
