"""Classic VAE math against NumPy closed forms: KL, reparameterization, decoder likelihoods."""
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.distributions import (diagonal_gaussian, kl_per_dimension, kl_to_standard_normal,
                                     reparameterize, standard_normal)
from keras_vae.models.likelihoods import decoder_distribution, decoder_mean, params_per_channel

rng = np.random.default_rng(0)


def test_kl_matches_closed_form():
    mean = rng.normal(size=(5, 7)).astype(np.float32)
    log_var = rng.normal(size=(5, 7)).astype(np.float32)
    expected = 0.5 * np.sum(mean**2 + np.exp(log_var) - 1.0 - log_var, axis=1)
    np.testing.assert_allclose(kl_to_standard_normal(mean, log_var).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(kl_per_dimension(mean, log_var).numpy().sum(axis=1), expected, rtol=1e-5)


def test_kl_is_zero_only_at_the_prior():
    zeros = np.zeros((3, 4), np.float32)
    np.testing.assert_allclose(kl_to_standard_normal(zeros, zeros).numpy(), 0.0, atol=1e-7)
    assert np.all(kl_to_standard_normal(zeros + 0.1, zeros).numpy() > 0)


def test_posterior_log_prob_matches_numpy():
    mean = rng.normal(size=(4, 3)).astype(np.float32)
    log_var = rng.normal(size=(4, 3)).astype(np.float32)
    z = rng.normal(size=(4, 3)).astype(np.float32)
    var = np.exp(log_var)
    expected = -0.5 * np.sum((z - mean) ** 2 / var + log_var + np.log(2 * np.pi), axis=1)
    np.testing.assert_allclose(diagonal_gaussian(mean, log_var).log_prob(z).numpy(), expected, rtol=1e-5)
    expected_prior = -0.5 * np.sum(z**2 + np.log(2 * np.pi), axis=1)
    np.testing.assert_allclose(standard_normal(3).log_prob(z).numpy(), expected_prior, rtol=1e-5)


def test_reparameterization_moments():
    mean = np.array([[1.0, -2.0]], np.float32)
    log_var = np.log(np.array([[0.25, 4.0]], np.float32))
    eps = tf.random.stateless_normal([200_000, 1, 2], seed=[1, 2])
    z = reparameterize(mean, log_var, eps).numpy().reshape(-1, 2)
    np.testing.assert_allclose(z.mean(axis=0), mean[0], atol=0.02)
    np.testing.assert_allclose(z.std(axis=0), [0.5, 2.0], rtol=0.01)


def test_bernoulli_likelihood_is_negative_bce_summed_over_pixels():
    logits = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
    x = rng.random((2, 4, 4, 1)).astype(np.float32)  # also valid for grey levels (continuous BCE)
    p = 1 / (1 + np.exp(-logits))
    expected = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(1, 2, 3))
    dist = decoder_distribution(logits, "bernoulli")
    np.testing.assert_allclose(dist.log_prob(x).numpy(), expected, rtol=1e-5)
    np.testing.assert_allclose(decoder_mean(logits, "bernoulli").numpy(), p, rtol=1e-6)


@pytest.mark.parametrize("learn_variance", [True, False])
def test_gaussian_likelihood(learn_variance):
    channels = params_per_channel("gaussian", learn_variance)
    params = rng.normal(size=(3, 2, 2, 3 * channels)).astype(np.float32)
    x = rng.random((3, 2, 2, 3)).astype(np.float32)
    loc = 1 / (1 + np.exp(-params[..., :3]))
    log_var = params[..., 3:] if learn_variance else np.full_like(loc, -2.0)
    expected = -0.5 * np.sum((x - loc) ** 2 / np.exp(log_var) + log_var + np.log(2 * np.pi), axis=(1, 2, 3))
    dist = decoder_distribution(params, "gaussian", learn_variance, fixed_log_variance=-2.0)
    np.testing.assert_allclose(dist.log_prob(x).numpy(), expected, rtol=1e-4)
    np.testing.assert_allclose(decoder_mean(params, "gaussian", learn_variance).numpy(), loc, rtol=1e-6)


def test_laplace_likelihood():
    params = rng.normal(size=(2, 3, 3, 2)).astype(np.float32)
    x = rng.random((2, 3, 3, 1)).astype(np.float32)
    loc, log_scale = 1 / (1 + np.exp(-params[..., :1])), params[..., 1:]
    expected = np.sum(-np.abs(x - loc) / np.exp(log_scale) - log_scale - np.log(2), axis=(1, 2, 3))
    np.testing.assert_allclose(decoder_distribution(params, "laplace").log_prob(x).numpy(), expected, rtol=1e-4)
