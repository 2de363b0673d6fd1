"""The library speaks of parameters, the CLI of flags: a message's `time_limit` is printed as ``--time-limit``.

Library code (everything under ``automel/`` but ``automel/cli/``) names a user-settable option as the Python
API spells it, in backticks: the parameter of :mod:`automel.api` (``automel.search(time_limit=...)``), else
the field of the dataclass the library takes (``SearchOptions.steps_per_trial``), else the flag in snake case
(:func:`automel.errors.option_named`). A notebook user then reads a name they can type, never a flag.

The CLI shows the same text with its flags: :data:`FLAGS` maps each parameter to the flag that sets it, and
:func:`as_flags` replaces every backticked name found there by the flag (without backticks); other
backticked text (`automel search`, `test`) stays as it is. The CLI's printers apply it: the one
error line (:func:`automel.cli._common.fail`), the interrupted line, the library's notes and warnings; the
``note=``/progress callbacks a command gives the engine are wrapped in :func:`flag_note`.

A new option of the CLI whose flag is not its parameter's snake case, or a new parameter a library message
names, gets its row in :data:`FLAGS`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["FLAGS", "as_flags", "flag_note"]

FLAGS: dict[str, str] = {
    # automel.search(...) / `automel search`, `automel refit`, `automel worker`
    "data": "--data",
    "data_root": "--data",
    "time_limit": "--time-limit",
    "quality": "--quality",
    "trials": "--trials",
    "refit": "--refit",
    "study": "--study",
    "storage": "--storage",
    "home": "--home",
    "encoders": "--encoders",
    "poolings": "--poolings",
    "heads": "--heads",
    "sampler": "--sampler",
    "pruner": "--pruner",
    "portfolio": "--portfolio",
    "device": "--device",
    "seed": "--seed",
    "keep": "--keep",
    "steps_per_trial": "--steps-per-trial",
    "workers": "--workers",
    "formats": "--formats",
    "max_params": "--max-params",
    "max_latency_ms": "--max-latency-ms",
    "deterministic": "--deterministic",
    "create_dirs": "--create-dirs",
    "grace_period": "--grace-period",
    "adapt": "--adapt",
    "noise": "--noise",
    "rir": "--rir",
    "objective": "--objective",
    "steps": "--steps",
    "timeout": "--timeout",
    # Model methods / `automel predict`, `embed`, `verify`, `export`, `report`
    "out": "--out",
    "top_k": "--top-k",
    "scores": "--scores",
    "trial": "--trial",
    "pareto": "--pareto",
    "allow_unknown_speakers": "--allow-unknown-speakers",
    # `automel train`
    "config": "--config",
    "preset": "--preset",
    "valid_every": "--valid-every",
    "compile": "--compile",
    "large_margin": "--large-margin",
    "average": "--average",
    # `automel data prepare`, `automel data synth`
    "manifest": "--manifest",
    "speaker_regex": "--speaker-regex",
    "test_per_speaker": "--test-per-speaker",
    "jobs": "--jobs",
    "speakers": "--speakers",
    "utterances": "--utterances",
}

_NAMED = re.compile(r"`([A-Za-z_][A-Za-z0-9_]*)`")


def as_flags(text: str) -> str:
    """``text`` with each backticked parameter of :data:`FLAGS` replaced by its flag; the rest unchanged.

    >>> as_flags("give it a longer `time_limit` or a smaller `steps_per_trial`; see `automel search`")
    'give it a longer --time-limit or a smaller --steps-per-trial; see `automel search`'
    """
    return _NAMED.sub(lambda match: FLAGS.get(match.group(1), match.group(0)), text)


def flag_note(print_fn: Callable[[str], object]) -> Callable[[str], None]:
    """``print_fn`` for the engine's ``note=``/progress callbacks, each line passed through :func:`as_flags`:
    ``note=flag_note(lambda line: console.print(line, highlight=False))``."""

    def note(line: str) -> None:
        print_fn(as_flags(line))

    return note
