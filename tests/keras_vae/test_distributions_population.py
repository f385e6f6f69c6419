"""Population KL, batch-mixture moments and the variance regularizer against NumPy closed forms."""
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.distributions import (batch_mixture, kl_per_dimension, kl_to_standard_normal, mixture_kl_monte_carlo,
                                     mixture_covariance, mixture_moments, moment_matched_kl, population_kl,
                                     variance_regularizer)

RNG = np.random.default_rng(0)
MU = RNG.normal(0.3, 1.5, size=(7, 5)).astype(np.float32)
LOG_VAR = RNG.normal(-0.5, 0.8, size=(7, 5)).astype(np.float32)


def np_gauss_kl(m, s2):
    return 0.5 * np.sum(m ** 2 + s2 - 1.0 - np.log(s2), axis=-1)


def test_mixture_moments_means_and_full_mixture_closed_form():
    m, s2 = mixture_moments(MU, LOG_VAR, "means")
    np.testing.assert_allclose(m, MU.mean(0), rtol=1e-5)
    np.testing.assert_allclose(s2, MU.var(0), rtol=1e-5)
    m, s2 = mixture_moments(MU, LOG_VAR, "mixture")
    np.testing.assert_allclose(s2, np.exp(LOG_VAR).mean(0) + MU.var(0), rtol=1e-5)


def test_full_mixture_moments_equal_tfp_mixture_moments():
    mixture = batch_mixture(MU, LOG_VAR)
    m, s2 = mixture_moments(MU, LOG_VAR, "mixture")
    np.testing.assert_allclose(m, mixture.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s2, mixture.variance(), rtol=1e-5)


@pytest.mark.parametrize("variance", ["means", "mixture"])
def test_population_kl_closed_form(variance):
    s2 = MU.var(0) + (np.exp(LOG_VAR).mean(0) if variance == "mixture" else 0.0)
    expected = np_gauss_kl(MU.mean(0), s2 + 1e-6)
    np.testing.assert_allclose(population_kl(MU, LOG_VAR, variance), expected, rtol=1e-5)


def test_population_kl_zero_when_batch_moments_match_prior():
    # means +-1 in every dimension: mean 0, variance of the means 1
    mu = np.array([[1.0, -1.0], [-1.0, 1.0]], np.float32)
    assert abs(float(population_kl(mu, np.zeros_like(mu), "means", epsilon=0.0))) < 1e-6
    # the full mixture adds the posterior variances: sigma^2 = 1 gives s^2 = 2, KL = 1/2 (2 - 1 - log 2) per dim
    expected = 2 * 0.5 * (2.0 - 1.0 - np.log(2.0))
    np.testing.assert_allclose(population_kl(mu, np.zeros_like(mu), "mixture", epsilon=0.0), expected, rtol=1e-5)


def test_population_kl_symmetries():
    # invariant under m -> -m (the prior is symmetric) and under permuting latent dimensions
    base = float(population_kl(MU, LOG_VAR, "mixture"))
    assert float(population_kl(-MU, LOG_VAR, "mixture")) == pytest.approx(base, rel=1e-6)
    perm = [3, 0, 4, 1, 2]
    assert float(population_kl(MU[:, perm], LOG_VAR[:, perm], "mixture")) == pytest.approx(base, rel=1e-6)
    # and under permuting the examples of the batch
    assert float(population_kl(MU[::-1], LOG_VAR[::-1], "mixture")) == pytest.approx(base, rel=1e-6)


def test_kl_asymmetry_and_mean_shift_symmetry():
    # KL(N(a,1)||N(0,1)) = KL(N(0,1)||N(a,1)) = a^2/2, but KL(N(0,s^2)||N(0,1)) != KL(N(0,1)||N(0,s^2))
    a = np.array([0.7, -1.3], np.float32)
    np.testing.assert_allclose(moment_matched_kl(a, np.ones(2, np.float32), epsilon=0.0), np.sum(a ** 2) / 2, rtol=1e-6)
    s2 = np.float32(0.25)
    forward = 0.5 * (s2 - 1 - np.log(s2))
    reverse = 0.5 * (1 / s2 - 1 + np.log(s2))
    got = float(moment_matched_kl(np.zeros(1, np.float32), np.array([s2]), epsilon=0.0))
    assert got == pytest.approx(forward, rel=1e-5)
    assert abs(got - reverse) > 0.1


def test_standard_kl_closed_form_and_per_dimension_sum():
    expected = np_gauss_kl(MU, np.exp(LOG_VAR))
    np.testing.assert_allclose(kl_to_standard_normal(MU, LOG_VAR), expected, rtol=1e-5)
    np.testing.assert_allclose(tf.reduce_sum(kl_per_dimension(MU, LOG_VAR), -1), expected, rtol=1e-5)


def test_variance_regularizer_closed_form():
    s2 = np.exp(LOG_VAR)
    np.testing.assert_allclose(variance_regularizer(LOG_VAR), np.sum(s2 - 1 - LOG_VAR, -1), rtol=1e-5)
    assert float(tf.reduce_max(tf.abs(variance_regularizer(np.zeros((2, 3), np.float32))))) == 0.0
    # it is twice KL(N(0, sigma^2) || N(0, 1)) = the per-example KL with the means set to 0
    np.testing.assert_allclose(variance_regularizer(LOG_VAR), 2 * kl_to_standard_normal(0 * MU, LOG_VAR), rtol=1e-5)
    # not symmetric in sigma^2 <-> 1/sigma^2: r(s) - r(1/s) = s - 1/s - 2 log s
    diff = variance_regularizer(LOG_VAR) - variance_regularizer(-LOG_VAR)
    np.testing.assert_allclose(diff, np.sum(s2 - 1 / s2 - 2 * LOG_VAR, -1), rtol=1e-4, atol=1e-4)


def test_variance_regularizer_gradient_pushes_small_sigma_up():
    log_var = tf.Variable([[-6.0, -2.0, 0.0, 2.0]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(variance_regularizer(log_var))
    grad = tape.gradient(loss, log_var).numpy()[0]
    np.testing.assert_allclose(grad, np.exp([-6.0, -2.0, 0.0, 2.0]) - 1.0, rtol=1e-5, atol=1e-7)
    assert grad[0] < 0 and grad[1] < 0  # gradient descent raises small sigmas ...
    assert grad[2] == 0 and grad[3] > 0  # ... leaves sigma = 1 alone and lowers large ones
    before = log_var.numpy().copy()
    log_var.assign_sub(0.1 * grad[None])
    assert log_var.numpy()[0, 0] > before[0, 0]


def test_mixture_kl_monte_carlo_matches_closed_form_for_one_component_and_zero_at_prior():
    mu = np.array([[0.5, -1.0, 0.2]], np.float32)
    log_var = np.log(np.array([[0.5, 2.0, 1.0]], np.float32))
    estimate = float(mixture_kl_monte_carlo(mu, log_var, num_samples=20000, seed=tf.constant([1, 2], tf.int32)))
    assert estimate == pytest.approx(float(np_gauss_kl(mu[0], np.exp(log_var[0]))), abs=0.03)
    zeros = np.zeros((4, 3), np.float32)
    assert abs(float(mixture_kl_monte_carlo(zeros, zeros, 256, seed=tf.constant([0, 1], tf.int32)))) < 1e-5


def test_mixture_kl_is_at_most_the_average_per_example_kl():
    # convexity: KL(1/B sum_i q_i || p) <= 1/B sum_i KL(q_i || p)
    estimate = float(mixture_kl_monte_carlo(MU, LOG_VAR, 20000, seed=tf.constant([3, 4], tf.int32)))
    assert estimate < float(tf.reduce_mean(kl_to_standard_normal(MU, LOG_VAR)))
    assert estimate > 0.0


def test_full_mixture_covariance_closed_form_and_tfp():
    m, cov = mixture_covariance(MU, LOG_VAR)
    expected = np.cov(MU.T, bias=True) + np.diag(np.exp(LOG_VAR).mean(0))
    np.testing.assert_allclose(m, MU.mean(0), rtol=1e-5)
    np.testing.assert_allclose(cov, expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(cov, batch_mixture(MU, LOG_VAR).covariance(), rtol=1e-4, atol=1e-5)


def test_covariance_population_kl_closed_form_and_bound():
    m = MU.mean(0).astype(np.float64)
    cov = np.cov(MU.T, bias=True) + np.diag(np.exp(LOG_VAR).mean(0)) + 1e-6 * np.eye(5)
    expected = 0.5 * (np.trace(cov) + m @ m - 5 - np.linalg.slogdet(cov)[1])
    kl_full = float(population_kl(MU, LOG_VAR, "covariance"))
    np.testing.assert_allclose(kl_full, expected, rtol=1e-4)
    # same trace and mean, and det(Sigma) <= prod(diag Sigma) (Hadamard): correlations only add KL
    assert kl_full >= float(population_kl(MU, LOG_VAR, "mixture")) - 1e-4
    # ... strictly, when the codes are correlated
    correlated = np.stack([MU[:, 0], MU[:, 0] + 0.01 * MU[:, 1]], axis=1)
    tight = np.full_like(correlated, -6.0)
    assert float(population_kl(correlated, tight, "covariance")) > float(population_kl(correlated, tight, "mixture")) + 1.0
