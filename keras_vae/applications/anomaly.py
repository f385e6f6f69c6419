"""Anomaly scores of images under a trained VAE, thresholds at a chosen false-positive rate, ROC-AUC.

Per image (higher = more anomalous):

    neg_elbo              -ELBO(x) = -E_q[log p(x|z) + log p(z) - log q(z|x)], S samples (classic VAE)
    iwae_nll              -log p(x) by the IWAE bound with K importance samples (classic VAE)
    reconstruction_error  mean over pixels of (x - decode(E[z|x]))^2 on [0, 1] (both models)
    mahalanobis           sqrt((mu(x) - m)^T C^-1 (mu(x) - m)), m and C the mean and covariance of the
                          posterior means of the training data (both models)

A threshold for score s at false-positive rate a is the smallest value that at most a fraction a
of normal (validation) images exceed: t = the ceil((1 - a) n)-th smallest validation score. An image
is flagged when s > t. The VAEGAN has no likelihood (its decoder is not a density), so it gets only
the last two scores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from keras_vae.errors import ConfigError

SCORES = ("neg_elbo", "iwae_nll", "reconstruction_error", "mahalanobis")
LIKELIHOOD_SCORES = ("neg_elbo", "iwae_nll")


def available_scores(model) -> tuple[str, ...]:
    """The scores ``model`` supports: all four for a VAE, the last two for a model without a likelihood."""
    if hasattr(model, "log_likelihood"):
        return SCORES
    return tuple(s for s in SCORES if s not in LIKELIHOOD_SCORES)


@dataclass(frozen=True)
class LatentGaussian:
    """N(mean, cov) fitted to posterior means; ``precision`` is cov^-1 (with a small ridge)."""

    mean: np.ndarray
    cov: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, codes: np.ndarray, ridge: float = 1e-6) -> "LatentGaussian":
        """Sample mean and covariance (ddof 1) of codes [N, D]; ridge * mean variance is added to the diagonal."""
        codes = np.asarray(codes, np.float64)
        if codes.ndim != 2 or len(codes) < 2:
            raise ConfigError(f"fitting the latent Gaussian needs at least 2 codes [N, D], got {codes.shape}")
        mean = codes.mean(axis=0)
        cov = np.atleast_2d(np.cov(codes, rowvar=False))
        cov = cov + np.eye(len(cov)) * ridge * max(float(np.trace(cov)) / len(cov), 1e-12)
        return cls(mean=mean, cov=cov, precision=np.linalg.inv(cov))

    def distance(self, codes: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each code [N, D] to the fitted Gaussian, [N]."""
        diff = np.asarray(codes, np.float64) - self.mean
        return np.sqrt(np.maximum(np.einsum("nd,de,ne->n", diff, self.precision, diff), 0.0))


def anomaly_scores(model, images: np.ndarray, latent: LatentGaussian, *, scores=None, iwae_samples: int = 200,
                   elbo_samples: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Per-image scores (module docstring) for images in the model's range; {name: [N]}."""
    scores = tuple(scores or available_scores(model))
    unknown = [s for s in scores if s not in available_scores(model)]
    if unknown:
        raise ConfigError(f"score {unknown[0]!r} is not available for a {type(model).__name__}: "
                          f"choose from {', '.join(available_scores(model))}")
    out: dict[str, np.ndarray] = {}
    mean, _ = model.encode(images)
    if "neg_elbo" in scores:
        out["neg_elbo"] = -np.asarray(model.elbo(images, num_samples=elbo_samples, seed=seed), np.float64)
    if "iwae_nll" in scores:
        out["iwae_nll"] = -np.asarray(model.log_likelihood(images, num_samples=iwae_samples, seed=seed), np.float64)
    if "reconstruction_error" in scores:
        x = np.asarray(model.to_unit(images), np.float64)
        recon = np.asarray(model.to_unit(model.decode(mean)), np.float64)
        out["reconstruction_error"] = ((x - recon) ** 2).reshape(len(x), -1).mean(axis=1)
    if "mahalanobis" in scores:
        out["mahalanobis"] = latent.distance(np.asarray(mean))
    return {s: out[s] for s in scores}


def check_fpr(fpr: float) -> float:
    if not (isinstance(fpr, (int, float)) and 0.0 < fpr < 1.0):
        raise ConfigError(f"false-positive rate must be in (0, 1), e.g. 0.05, got {fpr!r}")
    return float(fpr)


def fit_threshold(normal_scores: np.ndarray, fpr: float) -> float:
    """The ceil((1 - fpr) n)-th smallest normal score: at most a fraction fpr of them lie above it."""
    fpr = check_fpr(fpr)
    values = np.sort(np.asarray(normal_scores, np.float64))
    if len(values) == 0:
        raise ConfigError("cannot fit a threshold on 0 validation images")
    rank = min(len(values), max(1, math.ceil((1.0 - fpr) * len(values))))
    return float(values[rank - 1])


def roc_auc(scores: np.ndarray, is_anomaly: np.ndarray) -> float:
    """Area under the ROC curve = P(score of an anomaly > score of a normal image) + 0.5 P(tie)
    (the Mann-Whitney U statistic over n_anomalies * n_normal; ranks with ties averaged)."""
    scores, y = np.asarray(scores, np.float64), np.asarray(is_anomaly, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        raise ConfigError("ROC-AUC needs both anomalous and normal images")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), np.float64)
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = 0.5 * (i + j) + 1.0
        i = j + 1
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))
