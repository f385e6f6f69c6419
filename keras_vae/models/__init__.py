"""Models: the classic VAE and the paper's VAEGAN, both ``LatentVariableModel`` subclasses."""
from __future__ import annotations

from keras_vae.config import RunConfig
from keras_vae.models.base import LatentVariableModel
from keras_vae.models.vae import VAE
from keras_vae.models.vaegan import VAEGAN  # noqa: E402 - registers the class for load_model


def build_model(config: RunConfig) -> LatentVariableModel:
    """The (uncompiled) model a run configuration describes, seeded with ``config.train.seed``."""
    cls = VAE if config.model.kind == "vae" else VAEGAN
    return cls(config.model, config.loss, seed=config.train.seed)


__all__ = ["LatentVariableModel", "VAE", "VAEGAN", "build_model"]
