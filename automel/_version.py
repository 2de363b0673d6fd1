"""The package's version, on the ground floor: modules that record it need not import the package."""

__version__ = "0.1.0"
