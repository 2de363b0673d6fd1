"""Typed errors. Library code raises these; only the CLI turns them into messages and exit codes."""

from __future__ import annotations


class AutomelError(Exception):
    """Base class: the message is one line a user can act on."""

    exit_code = 1


class DataError(AutomelError):
    """A data set, feature file, manifest or submission is missing or malformed."""

    exit_code = 2


class PluginError(AutomelError):
    """A plugin is unknown, duplicated, broken or misconfigured."""

    exit_code = 2


class ConfigError(AutomelError):
    """A configuration file or option value is invalid."""

    exit_code = 2


class TrainingError(AutomelError):
    """Training could not go on (e.g. the loss became NaN or inf)."""


class NonFiniteLossError(TrainingError):
    """The loss became NaN or inf at ``step``."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"loss became {loss} at step {step}; lower the learning rate or check the data")
        self.step = step
        self.loss = loss


class StudyError(AutomelError):
    """A study is missing, or its frozen settings do not match what was asked."""

    exit_code = 2
