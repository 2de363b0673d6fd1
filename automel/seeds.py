"""The one range of seeds automel accepts: what numpy's and Optuna's generators take, 0 to 2**32 - 1.

Every seed a user gives (``--seed`` of ``train``, ``search``, ``data prepare``, ``data synth``; ``seed=`` of the
library) is checked here before any work, so an out-of-range seed is one line naming it, not a numpy
traceback at the first random draw minutes later.
"""

from __future__ import annotations

from automel.errors import ConfigError, option_named

SEED_MAX = 2**32 - 1


def check_seed(seed: object, name: str = "seed") -> int:
    """``seed`` if it is an integer from 0 to :data:`SEED_MAX`; else :class:`ConfigError` naming ``name`` (a
    parameter, shown in backticks, or a flag as given: :func:`automel.errors.option_named`)."""
    shown_name = option_named(name)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{shown_name} {seed!r} is not an integer; use one from 0 to {SEED_MAX}")
    if not 0 <= seed <= SEED_MAX:
        shown = str(seed) if len(str(seed)) <= 40 else f"{str(seed)[:30]}… ({len(str(seed))} digits)"
        raise ConfigError(f"{shown_name} {shown} is out of range; use an integer from 0 to {SEED_MAX}")
    return seed
