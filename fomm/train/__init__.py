"""Training: ``Trainer`` and ``train(TrainOptions)``; datasets in data.py, losses in losses.py."""

from fomm.train.loop import Trainer, TrainOptions, TrainResult, train

__all__ = ["TrainOptions", "TrainResult", "Trainer", "train"]
