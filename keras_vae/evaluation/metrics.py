"""Evaluation of trained models: posterior diagnostics, ELBO and IWAE log-likelihood.

Inputs are NumPy arrays of images in the model's value range; outputs are plain floats/lists
(JSON-ready), so ``metrics.json`` and the CLI can use them directly.
"""
from __future__ import annotations

from typing import Any

import numpy as np

ACTIVE_UNIT_THRESHOLD = 0.01


def _labels_of(labels, start: int, stop: int) -> dict[str, Any]:
    """``{"labels": labels[start:stop]}`` for a class-conditional model's calls, ``{}`` without labels."""
    return {} if labels is None else {"labels": np.asarray(labels)[start:stop]}


def encode_all(model, images: np.ndarray, batch_size: int = 256, labels=None) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means and log-variances, each [N, D], for all images (with their ``labels`` for a
    class-conditional model)."""
    means, log_vars = [], []
    for start in range(0, len(images), batch_size):
        mean, log_var = model.encode(images[start:start + batch_size], **_labels_of(labels, start, start + batch_size))
        means.append(np.asarray(mean))
        log_vars.append(np.asarray(log_var))
    return np.concatenate(means), np.concatenate(log_vars)


def active_units(means: np.ndarray, threshold: float = ACTIVE_UNIT_THRESHOLD) -> int:
    """Number of latent dimensions j with Var_x[E_q(z|x) z_j] > threshold (Burda et al., 2016)."""
    return int(np.sum(np.var(means, axis=0) > threshold))


def posterior_diagnostics(means: np.ndarray, log_vars: np.ndarray) -> dict[str, Any]:
    """Population statistics of the posteriors over a data set (Rivera 2024, section 2):

    active units, mean posterior variance, per-dimension KL(q(z_j|x) || N(0,1)) averaged over x, and
    the moments of the aggregate posterior (a mixture): its mean m and variance
    mean_i sigma_i^2 + var_i mu_i against the prior's 0 and 1.
    """
    variances = np.exp(log_vars)
    kl_per_dim = 0.5 * np.mean(means**2 + variances - 1.0 - log_vars, axis=0)
    mixture_mean = means.mean(axis=0)
    means_variance = means.var(axis=0)
    mixture_variance = variances.mean(axis=0) + means_variance
    return {
        "active_units": active_units(means),
        "latent_dim": int(means.shape[1]),
        "mean_posterior_variance": float(variances.mean()),
        "kl_per_dimension": [float(v) for v in kl_per_dim],
        "kl_total": float(kl_per_dim.sum()),
        "mixture_mean_abs_max": float(np.abs(mixture_mean).max()),
        "mixture_mean_rms": float(np.sqrt(np.mean(mixture_mean**2))),
        "mixture_variance_mean": float(mixture_variance.mean()),
        "means_variance_mean": float(means_variance.mean()),
    }


def model_diagnostics(model, images: np.ndarray, batch_size: int = 256, labels=None) -> dict[str, Any]:
    """``posterior_diagnostics`` of a model on images, plus the model's ``extra_diagnostics`` if any."""
    result = posterior_diagnostics(*encode_all(model, images, batch_size, labels=labels))
    extra = getattr(model, "extra_diagnostics", None)
    if callable(extra):
        result.update({k: float(v) for k, v in extra(images, **_labels_of(labels, 0, len(images))).items()})
    return result


def reconstruction_error(model, images: np.ndarray, batch_size: int = 256, labels=None) -> float:
    """Mean absolute error in [0, 1] pixel units between images and their reconstructions."""
    errors = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        recon = np.asarray(model.to_unit(model.reconstruct(x, **_labels_of(labels, start, start + batch_size))))
        errors.append(np.abs(recon - np.asarray(model.to_unit(x))).mean(axis=(1, 2, 3)))
    return float(np.concatenate(errors).mean())


def likelihood_evaluation(model, images: np.ndarray, num_samples: int = 1000, batch_size: int = 100,
                          seed: int = 0, progress=None, labels=None) -> dict[str, Any]:
    """ELBO (single-sample average) and IWAE estimate of log p(x) in nats per example, for a VAE (of
    log p(x|y) with ``labels``, for a class-conditional one).
    ``progress(n)``, if given, is called with the number of examples done after each batch."""
    elbos, lls = [], []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        given = _labels_of(labels, start, start + batch_size)
        elbos.append(model.elbo(x, num_samples=1, seed=seed + start, **given))
        lls.append(model.log_likelihood(x, num_samples=num_samples, seed=seed + start, **given))
        if progress is not None:
            progress(len(x))
    elbo, ll = np.concatenate(elbos), np.concatenate(lls)
    return {
        "examples": int(len(images)),
        "elbo": float(elbo.mean()),
        "iwae_k": int(num_samples),
        "log_likelihood": float(ll.mean()),
        "nll": float(-ll.mean()),
        "log_likelihood_stderr": float(ll.std(ddof=1) / np.sqrt(len(ll))) if len(ll) > 1 else 0.0,
    }
