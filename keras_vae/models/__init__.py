"""Models: the classic VAE and the paper's VAEGAN, both ``LatentVariableModel`` subclasses."""
from __future__ import annotations

from keras_vae.config import RunConfig
from keras_vae.models.base import LatentVariableModel
from keras_vae.models.vae import VAE
from keras_vae.models.vaegan import VAEGAN  # noqa: E402 - registers the class for load_model


def build_model(config: RunConfig) -> LatentVariableModel:
    """The (uncompiled) model a run configuration describes, seeded with ``config.train.seed``; its optimizer
    fields are what ``model.compile()`` uses (``VAE.from_preset(name)`` builds the same model)."""
    cls = VAE if config.model.kind == "vae" else VAEGAN
    return cls.from_run_config(config)


__all__ = ["LatentVariableModel", "VAE", "VAEGAN", "build_model"]
