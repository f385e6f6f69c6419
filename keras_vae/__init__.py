"""keras-vae: variational autoencoders in Keras 3.

The classic VAE of Kingma & Welling (2013) and the residual VAE-GAN of Rivera,
"How to Train Your VAE" (ICIP 2024), trained with ``model.fit`` and exported
to SavedModel (TF Serving) and ONNX.
"""
from __future__ import annotations

__version__ = "0.1.0"

from keras_vae.errors import ArtifactError, ConfigError, DataError, KerasVAEError

__all__ = ["__version__", "KerasVAEError", "ConfigError", "DataError", "ArtifactError"]
