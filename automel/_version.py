"""The package's version, on the ground floor: modules that record it need not import the package."""

__version__ = "0.1.0"


def versions() -> dict[str, str]:
    """The versions a run or an export records: automel's, torch's and Optuna's."""
    import optuna
    import torch

    return {"automel": __version__, "torch": torch.__version__, "optuna": optuna.__version__}
