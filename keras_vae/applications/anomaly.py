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

``score_source`` does all of it for a data source (the latent Gaussian fitted on the run's training
split, thresholds on its validation split) and returns an ``AnomalyReport``: one CSV row per image and
a JSON summary (thresholds, flag rates, ROC-AUC when the anomalous labels are known).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from keras_vae.choices import ANOMALY_SCORES as SCORES
from keras_vae.errors import ConfigError

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


def default_score(model) -> str:
    """The score behind the 'anomalous' flag unless one is chosen: iwae_nll when ``model`` has a
    likelihood, else reconstruction_error."""
    return "iwae_nll" if "iwae_nll" in available_scores(model) else "reconstruction_error"


def check_fpr(fpr: float) -> float:
    """``fpr`` as a float; ConfigError unless it is a number in (0, 1)."""
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


@dataclass(frozen=True)
class AnomalyReport:
    """What ``score_source`` found: ``columns`` (the CSV, one row per image: index, name and label when
    the source has them, every score, anomalous 0/1) and ``summary`` (the JSON beside it)."""

    columns: dict[str, Any]
    summary: dict[str, Any]

    @property
    def score(self) -> str:
        return self.summary["score"]

    @property
    def threshold(self) -> float:
        return self.summary["thresholds"][self.score]

    @property
    def flagged(self) -> int:
        """How many images the chosen score flags."""
        return int(self.columns["anomalous"].sum())

    def save(self, path: str | Path) -> tuple[Path, Path]:
        """Write the CSV at ``path`` and the summary as JSON at ``path`` with suffix .json (both atomically);
        returns both paths."""
        from keras_vae.applications.report import write_csv
        from keras_vae.utils.files import write_json

        path = Path(path)
        write_csv(path, self.columns)
        write_json(path.with_suffix(".json"), self.summary)
        return path, path.with_suffix(".json")


def _score_batches(model, batches: Iterable, latent: LatentGaussian, provenance: tuple[list, list, list] | None = None,
                   **kw) -> dict[str, np.ndarray]:
    """{score: [N]} over all ``batches``; with ``provenance`` = (index, labels, names) lists, also collects
    where each image came from."""
    from keras_vae.applications.encoding import _keep_provenance

    parts: dict[str, list[np.ndarray]] = {s: [] for s in available_scores(model)}
    for batch in batches:
        for s, v in anomaly_scores(model, batch.images, latent, **kw).items():
            parts[s].append(v)
        if provenance is not None:
            _keep_provenance(batch, *provenance)
    return {s: np.concatenate(v) if v else np.zeros(0) for s, v in parts.items()}


def score_source(model, config, source, batches: Iterable, *, score: str, fpr: float, iwae_samples: int = 200,
                 elbo_samples: int = 10, fit_examples: int = 5000, batch_size: int = 256, seed: int = 0,
                 anomalous_labels: Sequence[int] = (), extra: Mapping[str, Any] | None = None) -> AnomalyReport:
    """Every available score of every image in ``batches`` (``ExampleBatch`` objects of ``source``, in the
    model's range), with thresholds at false-positive rate ``fpr``.

    Normal data is the run's own source (``config.data``, its exclusions kept): the ``LatentGaussian`` is
    fitted on the posterior means of at most ``fit_examples`` training images, the thresholds
    (``fit_threshold``) on every validation image, read ``batch_size`` at a time and binarized as the run
    binarizes. ``score`` (one of ``available_scores(model)``) decides the 'anomalous' column. When the
    source has labels and both classes occur, ``summary["roc_auc"]`` gives each score's ROC-AUC with
    ``anomalous_labels`` as the positives. ``extra`` (e.g. run_dir, data, split) leads the summary.
    """
    from keras_vae.data import load_source
    from keras_vae.data.examples import iterate_examples, load_examples

    names = available_scores(model)
    if score not in names:
        raise ConfigError(f"score {score!r} is not available for a {type(model).__name__}: "
                          f"choose from {', '.join(names)}")
    kw = dict(iwae_samples=iwae_samples, elbo_samples=elbo_samples, seed=seed)
    shape, value_range, binarize = config.model.image_shape, config.model.value_range, config.data.binarize
    run_source = load_source(config.data)
    train = load_examples(run_source, image_shape=shape, value_range=value_range, split="train", binarize=binarize,
                          max_examples=fit_examples)
    latent = LatentGaussian.fit(np.asarray(model.encode(train.images)[0]))
    val_scores = _score_batches(model, iterate_examples(run_source, image_shape=shape, value_range=value_range,
                                                        split="validation", batch_size=batch_size,
                                                        binarize=binarize), latent, **kw)
    thresholds = {s: fit_threshold(v, fpr) for s, v in val_scores.items()}

    index, labels, file_names = [], [], []
    scores = _score_batches(model, batches, latent, (index, labels, file_names), **kw)
    columns: dict[str, Any] = {"index": np.concatenate(index) if index else np.zeros(0, np.int64)}
    if source.names is not None:
        columns["name"] = file_names
    if source.has_labels:
        columns["label"] = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    columns.update(scores)
    columns["anomalous"] = (scores[score] > thresholds[score]).astype(int)

    summary = {
        **(extra or {}), "images": int(len(columns["index"])),
        "score": score, "fpr": fpr, "iwae_samples": iwae_samples, "elbo_samples": elbo_samples,
        "latent_fit_examples": int(len(train.images)), "validation_examples": int(len(val_scores[names[0]])),
        "binarized": bool(binarize),
        "thresholds": thresholds,
        "validation_flag_rate": {s: float(np.mean(v > thresholds[s])) for s, v in val_scores.items()},
        "flag_rate": {s: float(np.mean(scores[s] > thresholds[s])) if len(scores[s]) else 0.0 for s in names},
    }
    if anomalous_labels and source.has_labels and len(columns["label"]):
        truth = np.isin(columns["label"], anomalous_labels)
        if truth.any() and (~truth).any():
            summary["anomalous_labels"] = list(anomalous_labels)
            summary["roc_auc"] = {s: roc_auc(scores[s], truth) for s in names}
    return AnomalyReport(columns, summary)
