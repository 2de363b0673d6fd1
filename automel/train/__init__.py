"""The one training loop, used by ``automel train`` and by every search trial."""

from automel.train.config import RunSettings, TrainParams
from automel.train.loop import Callback, TrainResult, evaluate, fit, predict

__all__ = ["Callback", "RunSettings", "TrainParams", "TrainResult", "evaluate", "fit", "predict"]
