"""Training: ``Trainer`` and ``train(TrainOptions)``; datasets in data.py, losses in losses.py."""

from fomm.train.loop import Trainer, train
from fomm.train.options import TrainOptions, TrainResult

__all__ = ["TrainOptions", "TrainResult", "Trainer", "train"]
