"""Decoder distributions p(x|z) of the classic VAE (Bernoulli, Gaussian, Laplace), from TFP.

The decoder network outputs one tensor ``params`` [B, H, W, C * k]: Bernoulli logits (k = 1),
or location and log-variance (Gaussian) / log-scale (Laplace) stacked on channels (k = 2) when the
variance is learned; with a fixed variance k = 1 and the fixed log-variance is used everywhere.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def params_per_channel(likelihood: str, learn_variance: bool) -> int:
    """How many decoder output channels each image channel needs."""
    return 1 if likelihood == "bernoulli" or not learn_variance else 2


def _split(params, learn_variance: bool, fixed_log_variance: float):
    params = tf.cast(params, tf.float32)
    if learn_variance:
        loc, log_var = tf.split(params, 2, axis=-1)
    else:
        loc, log_var = params, tf.fill(tf.shape(params), tf.constant(fixed_log_variance, tf.float32))
    return tf.sigmoid(loc), log_var


def decoder_distribution(
    params, likelihood: str, learn_variance: bool = True, fixed_log_variance: float = 0.0
) -> tfd.Distribution:
    """p(x|z) as a TFP distribution with event_shape [H, W, C] (pixels independent given z).

    Bernoulli: logits = params. Gaussian: N(sigmoid(loc), exp(log_var)). Laplace: Laplace(sigmoid(loc),
    exp(log_scale)). The location is squashed to [0, 1], the range of the data.
    """
    if likelihood == "bernoulli":
        base = tfd.Bernoulli(logits=tf.cast(params, tf.float32), dtype=tf.float32)
    elif likelihood == "gaussian":
        loc, log_var = _split(params, learn_variance, fixed_log_variance)
        base = tfd.Normal(loc, tf.exp(0.5 * log_var))
    elif likelihood == "laplace":
        loc, log_scale = _split(params, learn_variance, fixed_log_variance)
        base = tfd.Laplace(loc, tf.exp(log_scale))
    else:
        raise ValueError(f"unknown likelihood {likelihood!r}: choose 'bernoulli', 'gaussian' or 'laplace'")
    return tfd.Independent(base, reinterpreted_batch_ndims=3)


def decoder_mean(params, likelihood: str, learn_variance: bool = True):
    """E[x|z] in [0, 1] with plain TF ops only (exportable): sigmoid of the logits or of the location."""
    params = tf.cast(params, tf.float32)
    if likelihood != "bernoulli" and learn_variance:
        params = tf.split(params, 2, axis=-1)[0]
    return tf.sigmoid(params)
