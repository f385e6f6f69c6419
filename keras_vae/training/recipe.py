"""Training-recipe callbacks chosen by ``TrainConfig``: the learning-rate schedule and best-epoch keeping.

``recipe_callbacks(config, record)`` returns what a run's configuration asks for (possibly nothing):

- ``lr_schedule = "cosine"``: lr_e = lr_0 * (1 + cos(pi * e / E)) / 2 at the start of epoch e = 0..E-1
  (E = train.epochs), so the last epoch trains at a small but non-zero rate.
- ``keep_best = True`` (classic VAE): the weights of the epoch with the highest validation ELBO are
  put back at the end of ``fit``, and that epoch is written to ``record["kept_epoch"]``.
"""
from __future__ import annotations

import math
from typing import Any

import keras

from keras_vae.config import RunConfig
from keras_vae.errors import ConfigError


def cosine_learning_rate(epoch: int, epochs: int, base: float) -> float:
    """lr at the start of ``epoch`` (0-based) of ``epochs``: base * (1 + cos(pi * epoch / epochs)) / 2."""
    return base * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


def _optimizers(model) -> list:
    """The optimizers whose learning rate the schedule drives (the VAE's; the VAEGAN's generator's)."""
    g_opt = getattr(model, "g_optimizer", None)
    return [g_opt] if g_opt is not None else [model.optimizer]


class CosineLearningRate(keras.callbacks.Callback):
    """Sets the learning rate of the model's (generator) optimizer at each epoch start (cosine decay)."""

    def __init__(self, base: float, epochs: int) -> None:
        super().__init__()
        self.base, self.epochs = float(base), int(epochs)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for optimizer in _optimizers(self.model):
            optimizer.learning_rate.assign(cosine_learning_rate(epoch, self.epochs, self.base))


class KeepBestWeights(keras.callbacks.Callback):
    """Remembers the weights of the epoch with the largest ``monitor`` and restores them when fit ends."""

    def __init__(self, record: dict[str, Any], monitor: str = "val_elbo") -> None:
        super().__init__()
        self.record, self.monitor = record, monitor
        self.best, self.best_epoch, self.best_weights = -math.inf, None, None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise ConfigError(f"train.keep_best needs the validation metric {self.monitor!r}, which this model "
                              "does not report: set train.keep_best=false")
        if float(value) > self.best:
            self.best, self.best_epoch = float(value), epoch + 1
            self.best_weights = self.model.get_weights()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)
            self.record["kept_epoch"] = self.best_epoch


def recipe_callbacks(config: RunConfig, record: dict[str, Any]) -> list[keras.callbacks.Callback]:
    """The callbacks ``config.train`` asks for (schedule, best-epoch keeping), in that order."""
    callbacks: list[keras.callbacks.Callback] = []
    if config.train.lr_schedule == "cosine":
        callbacks.append(CosineLearningRate(config.train.learning_rate, config.train.epochs))
    if config.train.keep_best:
        if config.model.kind != "vae":
            raise ConfigError("train.keep_best selects epochs by validation ELBO, which only the classic VAE "
                              "reports: set train.keep_best=false for a vaegan run")
        if config.train.ema_momentum > 0:  # fit ends with the average; the kept epoch's weights would replace it
            raise ConfigError("train.keep_best keeps one epoch's weights and train.ema_momentum their moving "
                              "average: set one of them off (train.keep_best=false or train.ema_momentum=0)")
        callbacks.append(KeepBestWeights(record))
    return callbacks
