"""Models: the classic VAE and the paper's VAEGAN, both ``LatentVariableModel`` subclasses."""
from __future__ import annotations

from keras_vae.config import RunConfig
from keras_vae.models.base import LatentVariableModel
from keras_vae.models.vae import VAE


def build_model(config: RunConfig) -> LatentVariableModel:
    """The (uncompiled) model a run configuration describes, seeded with ``config.train.seed``."""
    if config.model.kind == "vae":
        return VAE(config.model, config.loss, seed=config.train.seed)
    from keras_vae.models.vaegan import VAEGAN  # the paper's model

    return VAEGAN(config.model, config.loss, seed=config.train.seed)


__all__ = ["LatentVariableModel", "VAE", "build_model"]
