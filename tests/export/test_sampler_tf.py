"""export/sampler_tf.py: the TF-graph twin of the portable noise and of the drawing rule."""
from __future__ import annotations

import numpy as np
import pytest

from export.sampler_tf import latents_tf, portable_noise_tf
from keras_vae.noise import float32_ulp, portable_noise


@pytest.mark.parametrize("seed, n, d", [(0, 64, 8), (1, 7, 4), (2**32 - 1, 3, 16), (31337, 1, 1)])
def test_tf_noise_matches_numpy(seed, n, d):
    import tensorflow as tf

    eps, u = portable_noise(seed, n, d)
    # inside a tf.function with tensor inputs, as the SavedModel runs it
    fn = tf.function(lambda s, m: portable_noise_tf(s, m, d),
                     input_signature=[tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int32)])
    tf_eps, tf_u = (t.numpy() for t in fn(tf.constant(seed, tf.int64), tf.constant(n, tf.int32)))
    assert tf_eps.shape == (n, d) and tf_eps.dtype == np.float32 and tf_u.shape == (n,)
    np.testing.assert_array_equal(tf_u, u)
    assert np.all(np.abs(tf_eps - eps) <= float32_ulp(eps)), np.abs(tf_eps - eps).max()


def _latents_np(eps, u, weights, means, scale_tril):
    """The drawing rule in float64 NumPy (searchsorted right, clipped)."""
    k = np.minimum(np.searchsorted(np.cumsum(weights), u, side="right"), len(weights) - 1)
    return means[k] + np.einsum("nij,nj->ni", scale_tril[k], eps.astype(np.float64)), k


def test_tf_drawing_rule_matches_numpy():
    rng = np.random.default_rng(0)
    K, d, n = 3, 5, 200
    weights = np.array([0.2, 0.5, 0.3])
    means = rng.normal(size=(K, d)) * 3
    scale_tril = np.tril(rng.normal(size=(K, d, d)))
    eps, u = portable_noise(5, n, d)
    ref, k = _latents_np(eps, u, weights, means, scale_tril)
    assert set(k) == {0, 1, 2}
    got = latents_tf(eps, u, weights, means, scale_tril).numpy()
    # float32 dot product of d terms plus the mean: |error| <= (d + 2) 2^-24 (|m| + sum_j |L_ij eps_j|)
    bound = (d + 2) * 2.0**-24 * (np.abs(means[k]) + np.einsum("nij,nj->ni", np.abs(scale_tril[k]), np.abs(eps)))
    assert np.all(np.abs(got - ref) <= bound + 1e-30)
    # the boundaries: u exactly on a cumulative weight goes to the next component, u past the end to K-1
    u_edge = np.array([0.0, 0.2, 0.7, 0.999], np.float32)
    cum32 = np.cumsum(weights).astype(np.float32)
    z = latents_tf(np.zeros((4, d), np.float32), u_edge, weights, means, scale_tril).numpy()
    expect_k = np.minimum((cum32[None, :] <= u_edge[:, None]).sum(1), K - 1)
    np.testing.assert_allclose(z, means[expect_k], rtol=1e-6)
    assert list(expect_k) == [0, 1, 2, 2]
