"""Encoder and decoder networks of the classic VAE: MLP (Kingma & Welling) and a small conv net.

Encoders map images [B, H, W, C] to (mean, log_var), each [B, D]; decoders map z [B, D] to the
likelihood's parameters [B, H, W, C * k] (see ``keras_vae.models.likelihoods``).

A class-conditional model (``num_classes`` > 0, Sohn et al. 2015) has a second input on each network, the
label one-hot [B, num_classes]: the encoder concatenates it to the flattened image (the conv net: to its
flattened features), the decoder to z. An unconditional model has the single-input networks, unchanged.
"""
from __future__ import annotations

import math

import keras

from keras_vae.config import ModelConfig
from keras_vae.errors import ConfigError
from keras_vae.models.likelihoods import params_per_channel


def _heads(h, latent_dim: int):
    mean = keras.layers.Dense(latent_dim, name="mean")(h)
    log_var = keras.layers.Dense(latent_dim, name="log_var")(h)
    return [mean, log_var]


def build_encoder(config: ModelConfig) -> keras.Model:
    """q(z|x): images -> [mean, log_var] with the configured architecture ('mlp' or 'conv')."""
    x_in = keras.Input(shape=config.image_shape, name="image")
    h = x_in
    if config.architecture == "conv":
        _check_conv_size(config)
        for i, filters in enumerate(config.conv_filters):
            h = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation=config.activation,
                                    name=f"conv_{i}")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    inputs = x_in
    if config.num_classes:
        y_in = keras.Input(shape=(config.num_classes,), name="label")
        h = keras.layers.Concatenate(name="with_label")([h, y_in])
        inputs = [x_in, y_in]
    for i, units in enumerate(config.hidden_units):
        h = keras.layers.Dense(units, activation=config.activation, name=f"hidden_{i}")(h)
    return keras.Model(inputs, _heads(h, config.latent_dim), name="encoder")


def build_decoder(config: ModelConfig) -> keras.Model:
    """p(x|z): z -> likelihood parameters [B, H, W, C * k], mirroring the encoder."""
    height, width, channels = config.image_shape
    out_channels = channels * params_per_channel(config.likelihood, config.learn_variance)
    z_in = keras.Input(shape=(config.latent_dim,), name="z")
    h, inputs = z_in, z_in
    if config.num_classes:
        y_in = keras.Input(shape=(config.num_classes,), name="label")
        h = keras.layers.Concatenate(name="with_label")([z_in, y_in])
        inputs = [z_in, y_in]
    for i, units in enumerate(reversed(config.hidden_units)):
        h = keras.layers.Dense(units, activation=config.activation, name=f"hidden_{i}")(h)
    if config.architecture == "conv":
        _check_conv_size(config)
        factor = 2 ** len(config.conv_filters)
        start = (height // factor, width // factor, config.conv_filters[-1])
        h = keras.layers.Dense(math.prod(start), activation=config.activation, name="project")(h)
        h = keras.layers.Reshape(start, name="unflatten")(h)
        for i, filters in enumerate(reversed(config.conv_filters)):
            h = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same",
                                             activation=config.activation, name=f"deconv_{i}")(h)
        params = keras.layers.Conv2D(out_channels, 3, padding="same", name="params")(h)
    else:
        h = keras.layers.Dense(height * width * out_channels, name="params")(h)
        params = keras.layers.Reshape((height, width, out_channels), name="unflatten")(h)
    return keras.Model(inputs, params, name="decoder")


def _check_conv_size(config: ModelConfig) -> None:
    factor = 2 ** len(config.conv_filters)
    height, width, _ = config.image_shape
    if height % factor or width % factor:
        valid = [factor * k for k in range(1, 9)]
        raise ConfigError(
            f"the conv architecture halves the image {len(config.conv_filters)} times, so height and width "
            f"must be multiples of {factor} (e.g. {valid}); got {height}x{width}"
        )
