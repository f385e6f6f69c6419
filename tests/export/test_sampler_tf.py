"""export/sampler_tf.py: the TF-graph twin of the portable noise and of the drawing rule."""
from __future__ import annotations

import numpy as np
import pytest

from keras_vae.export.sampler_tf import latents_tf, portable_noise_tf
from keras_vae.sampling.noise import float32_ulp, portable_noise


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


def test_tf_drawing_rule_matches_latent_sampler():
    """latents_tf vs LatentSampler.latents (the contract's NumPy reference) on a 3-component mixture."""
    from keras_vae.export.sampler_onnx import latent_tolerance
    from keras_vae.sampling.samplers import LatentSampler

    rng = np.random.default_rng(0)
    K, d, n = 3, 5, 200
    sampler = LatentSampler("gmm", np.array([0.2, 0.5, 0.3]), rng.normal(size=(K, d)) * 3,
                            np.tril(rng.normal(size=(K, d, d)), -1) + np.eye(d) * 0.7)
    eps, u = portable_noise(5, n, d)
    k = sampler.components(u)
    assert set(k) == {0, 1, 2}
    got = latents_tf(eps, u, sampler.weights, sampler.means, sampler.scale_tril).numpy()
    assert np.all(np.abs(got - sampler.latents(eps, u)) <= latent_tolerance(sampler, eps, u))
    # boundaries: u exactly on a cumulative weight goes to the next component, u past the end to K - 1
    cumulative = np.cumsum(sampler.weights.astype(np.float32))
    u_edge = np.array([0.0, cumulative[0], np.nextafter(cumulative[1], np.float32(0)), cumulative[1], 0.99999994],
                      np.float32)
    z = latents_tf(np.zeros((5, d), np.float32), u_edge, sampler.weights, sampler.means, sampler.scale_tril).numpy()
    assert list(sampler.components(u_edge)) == [0, 1, 1, 2, 2]
    np.testing.assert_array_equal(z, sampler.means.astype(np.float32)[[0, 1, 1, 2, 2]])
