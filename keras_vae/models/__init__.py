"""Models: the classic VAE and the paper's VAEGAN, both ``LatentVariableModel`` subclasses."""
from __future__ import annotations

from keras_vae.config import RunConfig
from keras_vae.models.base import LatentVariableModel
from keras_vae.models.vae import VAE
from keras_vae.models.vaegan import VAEGAN  # noqa: E402 - registers the class for load_model
from keras_vae.models.semi_supervised import SemiSupervisedVAE  # noqa: E402 - registers the class for load_model


def build_model(config: RunConfig, **fields) -> LatentVariableModel:
    """The (uncompiled) model a run configuration describes, seeded with ``config.train.seed``; its optimizer
    fields are what ``model.compile()`` uses (``VAE.from_preset(name)`` builds the same model). With
    ``data.labelled`` > 0, the semi-supervised M2 (``fields``: its ``num_labelled``, ``num_unlabelled``)."""
    if config.data.labelled:
        return SemiSupervisedVAE.from_run_config(config, **fields)
    cls = VAE if config.model.kind == "vae" else VAEGAN
    return cls.from_run_config(config, **fields)


__all__ = ["LatentVariableModel", "SemiSupervisedVAE", "VAE", "VAEGAN", "build_model"]
