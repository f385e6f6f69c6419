"""Posterior, prior, batch mixture and the KL terms of Rivera, "How to Train Your VAE" (ICIP 2024), built on TFP distributions.

Shapes: ``mean`` and ``log_var`` are [B, D] (batch B, latent size D). Per-example terms return [B];
population terms return scalars. All computations run in float32 (cast before building TFP
distributions, so mixed precision models stay correct).
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def _f32(*tensors):
    return [tf.cast(t, tf.float32) for t in tensors]


def diagonal_gaussian(mean, log_var) -> tfd.Distribution:
    """q(z|x) = N(mean, diag exp(log_var)); batch_shape [B], event_shape [D]."""
    mean, log_var = _f32(mean, log_var)
    return tfd.MultivariateNormalDiag(loc=mean, scale_diag=tf.exp(0.5 * log_var))


def standard_normal(latent_dim: int) -> tfd.Distribution:
    """The prior p(z) = N(0, I_D); batch_shape [], event_shape [D]."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([latent_dim]), scale_diag=tf.ones([latent_dim]))


def reparameterize(mean, log_var, eps):
    """z = mean + exp(log_var / 2) * eps, with eps ~ N(0, I) drawn by the caller (seeded)."""
    return mean + tf.exp(0.5 * log_var) * eps


def kl_to_standard_normal(mean, log_var):
    """Per-example KL(N(mean, diag sigma^2) || N(0, I)) = 1/2 sum_j (mu^2 + sigma^2 - 1 - log sigma^2); [B]."""
    posterior = diagonal_gaussian(mean, log_var)
    return tfd.kl_divergence(posterior, standard_normal(posterior.event_shape[-1]))


def kl_per_dimension(mean, log_var):
    """Per-example, per-dimension KL(N(mu_j, sigma_j^2) || N(0, 1)); [B, D]."""
    mean, log_var = _f32(mean, log_var)
    return tfd.kl_divergence(tfd.Normal(mean, tf.exp(0.5 * log_var)), tfd.Normal(0.0, 1.0))


def batch_mixture(mean, log_var) -> tfd.Distribution:
    """Aggregate posterior q(z) = 1/B sum_i N(z; mu_i, diag sigma_i^2), a MixtureSameFamily; event [D]."""
    components = diagonal_gaussian(mean, log_var)
    weights = tfd.Categorical(logits=tf.zeros(tf.shape(components.loc)[:1]))
    return tfd.MixtureSameFamily(mixture_distribution=weights, components_distribution=components)


def mixture_moments(mean, log_var, variance: str = "means"):
    """Moments (m, s^2) of the batch posterior, each [D]: m = mean_i mu_i and

    ``variance="means"`` (reference code): s^2 = var_i mu_i;
    ``variance="mixture"`` (exact mixture variance): s^2 = mean_i sigma_i^2 + var_i mu_i.
    """
    mean, log_var = _f32(mean, log_var)
    m = tf.reduce_mean(mean, axis=0)
    s2 = tf.reduce_mean(tf.square(mean - m), axis=0)
    if variance == "mixture":
        s2 = s2 + tf.reduce_mean(tf.exp(log_var), axis=0)
    elif variance != "means":
        raise ValueError(f"unknown diagonal population variance {variance!r}: choose 'means' or 'mixture'")
    return m, s2


def mixture_covariance(mean, log_var):
    """Mean m [D] and full covariance [D, D] of the batch mixture:
    Sigma = Cov_i(mu_i) + diag(mean_i sigma_i^2), positive definite for any batch size."""
    mean, log_var = _f32(mean, log_var)
    m = tf.reduce_mean(mean, axis=0)
    centred = mean - m
    count = tf.cast(tf.shape(mean)[0], tf.float32)
    covariance = tf.matmul(centred, centred, transpose_a=True) / count
    return m, covariance + tf.linalg.diag(tf.reduce_mean(tf.exp(log_var), axis=0))


def covariance_kl(m, covariance, epsilon: float = 1e-6):
    """KL(N(m, Sigma) || N(0, I)) = 1/2 (tr Sigma + m'm - D - log det Sigma) for a full covariance; a scalar."""
    m, covariance = _f32(m, covariance)
    eye = tf.eye(tf.shape(m)[-1], dtype=tf.float32)
    moment_match = tfd.MultivariateNormalTriL(loc=m, scale_tril=tf.linalg.cholesky(covariance + epsilon * eye))
    return tfd.kl_divergence(moment_match, standard_normal(m.shape[-1]))


def population_kl(mean, log_var, variance: str = "means", epsilon: float = 1e-6):
    """KL(N(m, S) || N(0, I)) for the batch mixture's moments; a scalar.

    ``variance="means"`` or ``"mixture"``: S = diag s^2 from ``mixture_moments``;
    ``variance="covariance"``: S = the mixture's full covariance (``mixture_covariance``), which also
    penalises correlated codes. ``epsilon`` keeps S positive definite when all means coincide.
    """
    if variance == "covariance":
        return covariance_kl(*mixture_covariance(mean, log_var), epsilon)
    m, s2 = mixture_moments(mean, log_var, variance)
    return moment_matched_kl(m, s2, epsilon)


def moment_matched_kl(m, s2, epsilon: float = 1e-6):
    """KL(N(m, diag s^2) || N(0, I)) = 1/2 sum_j (m_j^2 + s_j^2 - 1 - log s_j^2) for [D] moments; a scalar.

    ``epsilon`` is added to s^2 (keeps the log finite when s^2 = 0).
    """
    m, s2 = _f32(m, s2)
    moment_match = tfd.MultivariateNormalDiag(loc=m, scale_diag=tf.sqrt(s2 + epsilon))
    return tfd.kl_divergence(moment_match, standard_normal(m.shape[-1]))


def mixture_kl_monte_carlo(mean, log_var, num_samples: int = 64, seed=None):
    """Monte Carlo estimate of KL(q(z) || p(z)) for the batch mixture q: mean over samples of
    log q(z) - log p(z), z ~ q. A diagnostic (no closed form exists); a scalar.

    ``seed`` is a stateless seed (shape [2] int32 tensor) or None.
    """
    mixture = batch_mixture(mean, log_var)
    z = tf.stop_gradient(mixture.sample(num_samples, seed=seed))
    prior = standard_normal(z.shape[-1])
    return tf.reduce_mean(mixture.log_prob(z) - prior.log_prob(z))


def variance_regularizer(log_var):
    """Per-example sum_j (sigma_j^2 - 1 - log sigma_j^2) = 2 sum_j KL(N(0, sigma_j^2) || N(0, 1)); [B].

    Zero at sigma = 1, growing without bound as sigma -> 0: it keeps posteriors from collapsing.
    """
    (log_var,) = _f32(log_var)
    kl = tfd.kl_divergence(tfd.Normal(0.0, tf.exp(0.5 * log_var)), tfd.Normal(0.0, 1.0))
    return 2.0 * tf.reduce_sum(kl, axis=-1)

