"""The latent sampler inside a TF graph: portable noise and the drawing rule (SavedModel ``sample``).

``portable_noise_tf(seed, n, d)`` is the TensorFlow twin of ``keras_vae.sampling.noise.portable_noise``
(same hash, counters and Box-Muller in float64; see that module for the algorithm), and
``latents_tf(eps, u, weights, means, scale_tril)`` the twin of ``LatentSampler.latents``:

    k_i = min(#{k : cumsum(weights)_k <= u_i}, K - 1),   z_i = means[k_i] + scale_tril[k_i] @ eps_i

``flow_latents_tf(eps, u, sampler)`` is the twin of the ``flow`` sampler's drawing rule (``keras_vae.sampling.samplers.FlowSampler``).
``make_sample_functions(model, sampler)`` builds the ``sample`` / ``sample_uint8`` signatures:
inputs ``n`` (int32 scalar in [1, ``sample_limit(d)``]: at most ``contract.MAX_BATCH``, the batch every
other signature and client is bounded by) and ``seed`` (int64 scalar in [0, 2^32)), outputs ``image``
([n, H, W, C] float32 in [0, 1], or uint8) and ``z`` (the latents, [n, d] float32). The bounds are
assertions inside the graph, ahead of every op that allocates by ``n``, so TF Serving enforces them too:
a bad ``n`` or ``seed`` fails the request with an InvalidArgument error whose message
(``assertion failed: [sample: n must be <= 1024 (input n, ...: split larger draws ...)]``) names the
input, its range and the fix.

A class-conditional export (``classes``, a ``keras_vae.export.class_table.ClassSamplers``) adds the input
``label`` (int32 scalar in [0, C), asserted the same way): z is drawn by class label's rule
(``class_latents_tf``, the padded table of ``class_table``) and decoded with that label.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import tensorflow as tf

from keras_vae.export import contract
from keras_vae.sampling.noise import GOLDEN, MULTIPLIERS, SEED_LIMIT, UNIT


def lowbias32_tf(x: tf.Tensor) -> tf.Tensor:
    """lowbias32 of a uint32 tensor (wrapping uint32 arithmetic), elementwise."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
    x = x * tf.constant(MULTIPLIERS[0], tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
    x = x * tf.constant(MULTIPLIERS[1], tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def portable_noise_tf(seed, n, d: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(eps [n, d] float32, u [n] float32) for an int64 ``seed`` in [0, 2^32) and int32 ``n`` (tensors ok)."""
    seed = tf.cast(seed, tf.int64)
    n = tf.cast(n, tf.int64)
    stride = 2 * int(d) + 1
    key = lowbias32_tf(tf.bitwise.bitwise_xor(tf.cast(seed, tf.uint32), tf.constant(GOLDEN, tf.uint32)))
    counters = tf.cast(tf.reshape(tf.range(n * stride, dtype=tf.int64), [-1, stride]), tf.uint32)
    words = lowbias32_tf(tf.bitwise.bitwise_xor(lowbias32_tf(counters), key))
    top = tf.cast(tf.bitwise.right_shift(words, tf.constant(8, tf.uint32)), tf.float64)
    a = (top[:, 0:2 * d:2] + 1.0) * UNIT
    b = top[:, 1:2 * d:2] * UNIT
    eps = tf.sqrt(-2.0 * tf.math.log(a)) * tf.cos(tf.constant(2.0 * math.pi, tf.float64) * b)
    u = top[:, 2 * d] * UNIT
    return tf.cast(eps, tf.float32), tf.cast(u, tf.float32)


def latents_tf(eps, u, weights, means, scale_tril) -> tf.Tensor:
    """The drawing rule in float32: z_i = means[k_i] + scale_tril[k_i] @ eps_i, k_i by searchsorted(right)."""
    from keras_vae.export.sampler_onnx import cumulative_weights

    cumulative = tf.constant(cumulative_weights(weights))
    means = tf.constant(np.asarray(means, np.float32))
    scale_tril = tf.constant(np.asarray(scale_tril, np.float32))
    count = tf.reduce_sum(tf.cast(cumulative[None, :] <= u[:, None], tf.int32), axis=1)
    k = tf.minimum(count, int(cumulative.shape[0]) - 1)
    return tf.gather(means, k) + tf.einsum("nij,nj->ni", tf.gather(scale_tril, k), eps)


def flow_latents_tf(eps, u, sampler) -> tf.Tensor:
    """The ``flow`` sampler's drawing rule in float32 (the twin of ``FlowSampler.latents``, and of the graph of
    ``keras_vae.export.sampler_onnx.flow_nodes``): the whitened base mixture's rule, the affine couplings,
    then z = m + x L^T."""
    clamp = tf.constant(sampler.clamp, tf.float32)
    base = sampler.whitened_base
    x = latents_tf(eps, u, base.weights, base.means, base.scale_tril)
    for c in sampler.couplings:
        a = tf.gather(x, c.cond, axis=1)
        h = a
        for i, (kernel, bias) in enumerate(zip(c.kernels, c.biases)):
            h = tf.matmul(h, tf.constant(kernel)) + tf.constant(bias)
            if i < len(c.kernels) - 1:
                h = tf.nn.relu(h)
        width = len(c.trans)
        s = clamp * tf.tanh(h[:, :width] / clamp)
        b = tf.gather(x, c.trans, axis=1) * tf.exp(s) + h[:, width:]
        order = np.argsort(np.concatenate([c.cond, c.trans]))
        x = tf.gather(tf.concat([a, b], axis=1), order, axis=1)
    whitening_t = tf.constant(np.ascontiguousarray(np.asarray(sampler.whitening_tril, np.float32).T))
    return tf.constant(np.asarray(sampler.whitening_mean, np.float32)) + tf.matmul(x, whitening_t)


def class_latents_tf(eps, u, labels, classes) -> tf.Tensor:
    """Row i drawn by class labels[i]'s rule, from the padded table of ``ClassSamplers.tables``."""
    table = classes.tables()
    width = classes.width
    cumulative = tf.gather(tf.constant(table["cumulative"]), labels)  # [N, K]
    count = tf.reduce_sum(tf.cast(cumulative <= u[:, None], tf.int32), axis=1)
    rows = labels * width + tf.minimum(count, tf.gather(tf.constant(table["last"]), labels))
    return (tf.gather(tf.constant(table["means"]), rows)
            + tf.einsum("nij,nj->ni", tf.gather(tf.constant(table["scale_tril"]), rows), eps))


def sample_limit(d: int, max_batch: int = contract.MAX_BATCH) -> int:
    """The largest ``n`` the sample signatures take: ``max_batch``, and never more codes than one seed's
    2^32 noise counters hold (n (2d + 1) <= 2^32)."""
    return min(int(max_batch), SEED_LIMIT // (2 * int(d) + 1))


def _checked(n, seed, d: int):
    """Assertions on the signature's scalar inputs (InvalidArgument naming the input, its range and the fix);
    everything sized by ``n`` depends on the returned tensors, so nothing is allocated before they pass."""
    limit = sample_limit(d)
    # no quotes: TF escapes them in the message (TF Serving shows it as is)
    n_is = f"input n, the number of images of one request, is an integer in [1, {limit}]"
    seed_is = "input seed is an integer in [0, 2^32)"
    checks = [
        tf.debugging.assert_greater_equal(n, tf.constant(1, tf.int32), message=f"sample: n must be >= 1 ({n_is})"),
        tf.debugging.assert_less_equal(n, tf.constant(limit, tf.int32), message=(
            f"sample: n must be <= {limit} ({n_is}: split larger draws into requests with different seeds)")),
        tf.debugging.assert_greater_equal(seed, tf.constant(0, tf.int64), message=f"sample: seed must be >= 0 ({seed_is})"),
        tf.debugging.assert_less(seed, tf.constant(SEED_LIMIT, tf.int64), message=f"sample: seed must be < 2^32 ({seed_is})"),
    ]
    with tf.control_dependencies(checks):
        return tf.identity(n), tf.identity(seed)


def sample_specs() -> list[tf.TensorSpec]:
    return [tf.TensorSpec([], tf.int32, name=contract.SAMPLE_N_INPUT),
            tf.TensorSpec([], tf.int64, name=contract.SAMPLE_SEED_INPUT)]


def make_sample_functions(model, sampler, classes=None) -> dict[str, tuple[Callable, list[tf.TensorSpec]]]:
    """{"sample": ..., "sample_uint8": ...} as (tf.function, [n spec, seed spec]) for ``sampler`` (a LatentSampler);
    with ``classes`` (a conditional model's ``ClassSamplers``): (tf.function, [n, seed, label specs])."""
    from keras_vae.export.signatures import to_uint8

    if classes is not None:
        return _class_sample_functions(model, classes)
    d = int(model.latent_dim)
    arrays = (sampler.weights, sampler.means, sampler.scale_tril)

    def draw(n, seed):
        n, seed = _checked(n, seed, d)
        eps, u = portable_noise_tf(seed, n, d)
        z = flow_latents_tf(eps, u, sampler) if sampler.kind == "flow" else latents_tf(eps, u, *arrays)
        return z, model.to_unit(model.decode(z, training=False))

    @tf.function(input_signature=sample_specs())
    def sample(n, seed):
        z, image = draw(n, seed)
        return {contract.IMAGE_OUTPUT: image, contract.LATENT_OUTPUT: z}

    @tf.function(input_signature=sample_specs())
    def sample_uint8(n, seed):
        z, image = draw(n, seed)
        return {contract.IMAGE_OUTPUT: to_uint8(image), contract.LATENT_OUTPUT: z}

    return {"sample": (sample, sample_specs()), "sample_uint8": (sample_uint8, sample_specs())}


def _class_sample_functions(model, classes):
    from keras_vae.export.signatures import check_label, label_one_hot, label_spec, to_uint8

    d, k = int(model.latent_dim), int(classes.num_classes)
    specs = [*sample_specs(), label_spec(batched=False)]

    def draw(n, seed, label, signature):
        n, seed = _checked(n, seed, d)
        label = check_label(label, k, signature)
        eps, u = portable_noise_tf(seed, n, d)
        labels = tf.fill([n], label)
        z = class_latents_tf(eps, u, labels, classes)
        return z, model.to_unit(model.decode(z, training=False, labels=label_one_hot(labels, k)))

    @tf.function(input_signature=specs)
    def sample(n, seed, label):
        z, image = draw(n, seed, label, "sample")
        return {contract.IMAGE_OUTPUT: image, contract.LATENT_OUTPUT: z}

    @tf.function(input_signature=specs)
    def sample_uint8(n, seed, label):
        z, image = draw(n, seed, label, "sample_uint8")
        return {contract.IMAGE_OUTPUT: to_uint8(image), contract.LATENT_OUTPUT: z}

    return {"sample": (sample, specs), "sample_uint8": (sample_uint8, specs)}
