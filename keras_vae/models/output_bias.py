"""Decoder output-bias initialisation for the Bernoulli VAE (``model.output_bias``).

With ``output_bias = "data_mean"`` the bias of the decoder's last layer ("params") is set, before the
first step, to the logit of the training images' mean pixel value (Laplace-smoothed, so pixels that are
never on stay finite):

    m_i = (sum_n x_ni + 1) / (N + 2),      b_i = log m_i - log(1 - m_i)

per pixel for the MLP decoder (its bias has one entry per pixel), per channel for the conv decoder
(one bias per output channel; m is then also averaged over the image). At initialisation the decoder
then predicts the mean digit instead of 0.5 everywhere, so the first epochs are not spent learning the
background (an old trick of VAE code bases, e.g. Burda et al.'s IWAE code). ``"zero"`` keeps Keras'
zero bias.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from keras_vae.errors import ConfigError


def smoothed_mean(batches: Iterable) -> np.ndarray:
    """(sum of the images + 1) / (count + 2), per pixel and channel: [H, W, C] float64 in (0, 1)."""
    total, count = None, 0
    for x in batches:
        x = np.asarray(x, np.float64)
        total = x.sum(axis=0) if total is None else total + x.sum(axis=0)
        count += len(x)
    if total is None:
        raise ConfigError("model.output_bias='data_mean' needs training images, and the training set is empty")
    return (total + 1.0) / (count + 2.0)


def logit(p: np.ndarray) -> np.ndarray:
    """log p - log(1 - p), elementwise."""
    return np.log(p) - np.log1p(-p)


def initialize_output_bias(model, batches: Iterable) -> np.ndarray | None:
    """Set the decoder's "params" bias to the logit of the smoothed mean of ``batches`` (images in [0, 1]),
    when ``model.model_config.output_bias == "data_mean"``, and mark the model's ``output_bias_initialized``;
    returns the bias set (None when nothing is done)."""
    config = model.model_config
    if getattr(config, "output_bias", "zero") != "data_mean":
        return None
    if config.likelihood != "bernoulli":
        raise ConfigError(f"model.output_bias='data_mean' sets Bernoulli logits, but the likelihood is "
                          f"{config.likelihood!r}: use likelihood=bernoulli or output_bias=zero")
    bias = model.decoder.get_layer("params").bias
    mean = smoothed_mean(batches)
    if tuple(bias.shape) != (mean.size,):  # conv decoder: one bias per channel
        mean = mean.reshape(-1, mean.shape[-1]).mean(axis=0)
    value = logit(mean).reshape(tuple(bias.shape)).astype(np.float32)
    bias.assign(value)
    model.output_bias_initialized = True  # the model's first fit then leaves it alone (LatentVariableModel.fit)
    return value
