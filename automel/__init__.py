"""automel: AutoML for speaker classification on log-mel spectrograms."""

__version__ = "0.1.0"
__all__ = ["__version__"]
