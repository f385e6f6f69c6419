"""PatchGAN discriminator: layer recipe, logit map size, receptive field."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.config import ModelConfig
from keras_vae.errors import ConfigError
from keras_vae.models.patchgan import build_patchgan, logit_map_shape, receptive_field


def _config(**kw):
    base = dict(kind="vaegan", architecture="resnet", image_shape=(16, 16, 1), latent_dim=8, filters=(4,),
                num_stages=2, disc_filters=(4, 4, 1), disc_strides=(2, 1, 1))
    return ModelConfig(**{**base, **kw})


def test_receptive_field_hand_computed():
    # reference: k=3, strides 2,2,2,1,1,1 -> 1 + 2*(1 + 2 + 4 + 8 + 8 + 8) = 63
    assert receptive_field([3] * 6, [2, 2, 2, 1, 1, 1]) == 63
    assert receptive_field([3], [1]) == 3
    assert receptive_field([4, 4, 4], [2, 2, 1]) == 1 + 3 * (1 + 2 + 4)
    assert receptive_field([4, 4, 4, 4, 4], [2, 2, 2, 1, 1]) == 70  # pix2pix's 70x70 PatchGAN
    with pytest.raises(ValueError):
        receptive_field([3, 3], [1])


def test_reference_discriminator_gives_a_32x32_logit_map_for_256_images():
    config = _config(image_shape=(256, 256, 3), num_stages=6, disc_filters=(4, 4, 4, 2, 2, 1),
                     disc_strides=(2, 2, 2, 1, 1, 1))
    disc = build_patchgan(config)
    assert disc.output.shape[1:] == (32, 32, 1)
    assert logit_map_shape(config) == (32, 32)
    assert disc.receptive_field == 63
    assert tuple(ModelConfig().disc_filters) == (128, 128, 128, 64, 64, 1)  # defaults are the reference's
    assert tuple(ModelConfig().disc_strides) == (2, 2, 2, 1, 1, 1)


def test_layer_recipe_conv_bn_leakyrelu_dropout():
    disc = build_patchgan(_config())
    kinds = ["BatchNormalization" if isinstance(l, keras.layers.BatchNormalization) else type(l).__name__
             for l in disc.layers[1:]]  # the fused-kernel subclass counts as BatchNormalization
    assert kinds == ["Conv2D", "BatchNormalization", "LeakyReLU", "Dropout"] * 2 + \
        ["Conv2D", "BatchNormalization", "Activation"]  # no dropout on the logits
    assert all(l.negative_slope == pytest.approx(0.3) for l in disc.layers
               if isinstance(l, keras.layers.LeakyReLU))  # Keras' default, as in the reference
    convs = [l for l in disc.layers if isinstance(l, keras.layers.Conv2D)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 3
    assert [c.strides for c in convs] == [(2, 2), (1, 1), (1, 1)]
    assert all(l.rate == 0.25 for l in disc.layers if isinstance(l, keras.layers.Dropout))
    assert disc.output.dtype == "float32"


def test_empirical_receptive_field_equals_formula():
    config = _config(image_shape=(32, 32, 1), disc_filters=(3, 3, 1), disc_strides=(2, 1, 1), disc_dropout=0.0)
    disc = build_patchgan(config)
    x = tf.Variable(np.random.default_rng(0).normal(size=(1, 32, 32, 1)).astype(np.float32))
    with tf.GradientTape() as tape:
        logit = disc(x, training=False)[0, 8, 8, 0]
    support = np.nonzero(np.abs(tape.gradient(logit, x).numpy()[0, :, :, 0]).sum(axis=0))[0]
    assert support.max() - support.min() + 1 == disc.receptive_field == 11


def test_bad_discriminator_configs_are_config_errors():
    with pytest.raises(ConfigError, match="must end with 1"):
        _config(disc_filters=(4, 4, 2))
    with pytest.raises(ConfigError, match="same length"):
        _config(disc_filters=(4, 1), disc_strides=(2, 2, 1))
    with pytest.raises(ConfigError, match="reduce the image by 32"):
        _config(disc_filters=(4, 4, 4, 4, 4, 1), disc_strides=(2, 2, 2, 2, 2, 1))
    with pytest.raises(ConfigError, match=r"disc_dropout must be in \[0, 1\)"):
        _config(disc_dropout=1.0)


def test_training_mode_logits_are_not_dropped_out():
    """Dropout after the last BatchNorm zeroed a quarter of the logits in training (accuracy <= 0.75
    for a perfect discriminator): no logit may be exactly zero."""
    disc = build_patchgan(_config(disc_dropout=0.5))
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 1)).astype(np.float32)
    logits = np.asarray(disc(x, training=True))
    assert np.count_nonzero(logits == 0.0) == 0
