"""The tiny VAEGAN of the model tests (16x16x1, latent 8, one resnet stage of 4 filters) and its blob images."""
from __future__ import annotations

import numpy as np

from keras_vae.config import TrainConfig

MODEL = dict(kind="vaegan", architecture="resnet", image_shape=(16, 16, 1), latent_dim=8, filters=(4,),
             num_stages=2, encoder_identity_blocks=1, disc_filters=(4, 1), disc_strides=(2, 1))
LOSS = dict(kl="population", reconstruction_weight=50.0, adversarial_weight=1.0)
TRAIN = TrainConfig(learning_rate=1e-3, beta_1=0.5, disc_learning_rate=1e-3)


def images(n=16, seed=0):
    """Sharp random blobs in [-1, 1]."""
    rng = np.random.default_rng(seed)
    x = rng.choice([-1.0, 1.0], size=(n, 8, 8, 1)).astype(np.float32)
    return np.repeat(np.repeat(x, 2, axis=1), 2, axis=2)


def make(model=None, loss=None, train=TRAIN, seed=0):
    """A compiled VAEGAN of MODEL/LOSS with ``model``/``loss`` overrides, seeded."""
    import keras

    from keras_vae.config import LossConfig, ModelConfig
    from keras_vae.models.vaegan import VAEGAN

    keras.utils.set_random_seed(seed)
    vaegan = VAEGAN(ModelConfig(**{**MODEL, **(model or {})}), LossConfig(**{**LOSS, **(loss or {})}), seed=seed)
    vaegan.compile_for_training(train)
    return vaegan
