"""keras-vae: variational autoencoders in Keras 3.

The classic VAE of Kingma & Welling (2013) and the residual VAE-GAN of Rivera,
"How to Train Your VAE" (ICIP 2024), trained with ``model.fit`` and exported
to SavedModel (TF Serving) and ONNX.

``import keras_vae`` does not import TensorFlow. The names below load their modules on first use:

    keras_vae.VAE, keras_vae.VAEGAN    the models (keras.Model subclasses)
    keras_vae.SemiSupervisedVAE        model M2 of Kingma et al. (2014): semi-supervised, classifies
    keras_vae.load(path)               a run folder, model.keras or export folder -> model / OnnxDecoder
    keras_vae.train(config, out_dir)   one training run -> run folder
    keras_vae.OnnxDecoder, OnnxEncoder exported ONNX networks through onnxruntime (no TensorFlow)

After ``import keras_vae``, plain ``keras.models.load_model("model.keras")`` also works: the
model classes are imported the first time Keras looks one of them up (``keras_vae._registration``).
"""
from __future__ import annotations

import importlib
from typing import Any

from keras_vae import _registration
from keras_vae.errors import ArtifactError, ConfigError, DataError, KerasVAEError

__version__ = "0.1.0"

# public name -> (module, attribute), imported on first access (PEP 562)
_LAZY = {
    "VAE": ("keras_vae.models", "VAE"),
    "VAEGAN": ("keras_vae.models", "VAEGAN"),
    "SemiSupervisedVAE": ("keras_vae.models", "SemiSupervisedVAE"),
    "load": ("keras_vae.loading", "load"),
    "train": ("keras_vae.training.loop", "train"),
    "OnnxDecoder": ("keras_vae.serving.onnx_decoder", "OnnxDecoder"),
    "OnnxEncoder": ("keras_vae.serving.onnx_encoder", "OnnxEncoder"),
}

_registration.install()


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'keras_vae' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = ["__version__", "KerasVAEError", "ConfigError", "DataError", "ArtifactError", *_LAZY]
