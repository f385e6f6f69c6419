"""Anomaly scores of images under a trained VAE, thresholds at a chosen false-positive rate, ROC-AUC.

Per image (higher = more anomalous):

    neg_elbo              -ELBO(x) = -E_q[log p(x|z) + log p(z) - log q(z|x)], S samples (classic VAE)
    iwae_nll              -log p(x) by the IWAE bound with K importance samples (classic VAE)
    reconstruction_error  mean over pixels of (x - decode(E[z|x]))^2 on [0, 1] (both models)
    mahalanobis           sqrt((mu(x) - m)^T C^-1 (mu(x) - m)), m and C the mean and covariance of the
                          posterior means of the training data (both models)
    complexity_corrected  -log2 p(x) - L(x) in bits (Serra et al., ICLR 2020): the IWAE estimate in bits
                          minus L(x) = 8 * the bytes of x quantised to 8 bits (round(255 x)) written as a
                          grayscale PNG by Pillow at compression level 9 (classic VAE)
    likelihood_ratio      -LLR(x) = log p_background(x) - log p_model(x) in nats (Ren et al., NeurIPS 2019),
                          both IWAE estimates with the same K and seed; the background model is the same
                          recipe trained on perturbed images (``train_background``); classic VAE with a
                          background run only

The Bernoulli decoder gives a probability mass to a binary image. Runs that binarize (the digit
presets) are scored on binary images (the validation binarization of ``keras_vae.data.examples``), so
-log2 p(x) and L(x) are both code lengths of the same binary image (stored as 0/255 bytes in the PNG).
On grey [0, 1] images the Bernoulli term is a cross-entropy (the expected code length of Bernoulli(x)
draws), not a code length of the 8-bit image: the difference then ranks images but has no bit meaning.

A threshold for score s at false-positive rate a is the smallest value that at most a fraction a
of normal images exceed: t = the ceil((1 - a) n)-th smallest calibration score. The run's validation
split (normal data: held-out classes excluded) is split in two at random (``seed``): thresholds are
fitted on one part, and the fraction of the other part above them is the realised false-positive rate
reported beside them. The VAEGAN has no likelihood (its decoder is not a density), so it gets only
reconstruction_error and mahalanobis.

``score_source`` does all of it for a data source (the latent Gaussian fitted on the run's training
split, thresholds on its validation split) and returns an ``AnomalyReport``: one CSV row per image and
a JSON summary (thresholds, flag rates, ROC-AUC when the anomalous labels are known).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keras_vae.choices import ANOMALY_SCORES as SCORES
from keras_vae.errors import ConfigError

LIKELIHOOD_SCORES = ("neg_elbo", "iwae_nll", "complexity_corrected", "likelihood_ratio")
BACKGROUND_SCORES = ("likelihood_ratio",)
PNG_LEVEL = 9  # zlib level of the PNG writer behind complexity_corrected


def available_scores(model, background=None) -> tuple[str, ...]:
    """The scores ``model`` supports: every one for a VAE with a ``background`` model, all but
    likelihood_ratio without one, reconstruction_error and mahalanobis for a model without a likelihood."""
    if not hasattr(model, "log_likelihood"):
        return tuple(s for s in SCORES if s not in LIKELIHOOD_SCORES)
    return tuple(s for s in SCORES if background is not None or s not in BACKGROUND_SCORES)


def quantize_8bit(images_unit: np.ndarray) -> np.ndarray:
    """[0, 1] images [N, H, W, C] -> uint8 round(255 x) (clipped)."""
    return np.clip(np.rint(np.asarray(images_unit, np.float64) * 255.0), 0, 255).astype(np.uint8)


def png_bytes(image_uint8: np.ndarray) -> bytes:
    """One uint8 image [H, W, C] (C = 1 or 3) as PNG bytes (Pillow, zlib level ``PNG_LEVEL``, no metadata)."""
    import io

    from PIL import Image

    image = np.asarray(image_uint8)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ConfigError(f"PNG complexity needs uint8 images [H, W, 1 or 3], got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG",
                                                                          compress_level=PNG_LEVEL)
    return buffer.getvalue()


def complexity_bits(images_unit: np.ndarray) -> np.ndarray:
    """L(x) of Serra et al.: 8 * the PNG bytes of each [0, 1] image quantised to 8 bits; [N] float64 bits."""
    q = quantize_8bit(images_unit)
    return np.array([8.0 * len(png_bytes(x)) for x in q], np.float64)


def perturb(images_unit: np.ndarray, rate: float, seed: int = 0) -> np.ndarray:
    """Ren et al.'s input perturbation: each pixel (all channels) replaced, with probability ``rate``, by a
    value drawn uniformly from the 256 levels {0, 1/255, ..., 1}; [0, 1] images in, [0, 1] images out."""
    if not (isinstance(rate, (int, float)) and 0.0 < rate < 1.0):
        raise ConfigError(f"perturbation rate must be in (0, 1), e.g. 0.2, got {rate!r}")
    x = np.asarray(images_unit, np.float32)
    rng = np.random.default_rng(seed)
    hit = rng.random(x.shape[:-1] + (1,)) < rate
    noise = rng.integers(0, 256, size=x.shape[:-1] + (1,)).astype(np.float32) / 255.0
    return np.where(hit, noise, x).astype(np.float32)


def check_background(model, background) -> None:
    """ConfigError unless ``background`` can score the images ``model`` scores (a likelihood, same image
    shape and value range)."""
    if not hasattr(background, "log_likelihood"):
        raise ConfigError(f"the background model is a {type(background).__name__}, which has no likelihood: "
                          "train the background with a classic VAE recipe (train_background)")
    for name in ("image_shape", "value_range"):
        a, b = tuple(getattr(model, name)), tuple(getattr(background, name))
        if a != b:
            raise ConfigError(f"the background model's {name} {b} differs from the model's {a}: train the "
                              "background from this run (keras-vae anomaly RUN --background BG --train-background)")


@dataclass(frozen=True)
class LatentGaussian:
    """N(mean, cov) fitted to posterior means; ``precision`` is cov^-1 (with a small ridge)."""

    mean: np.ndarray
    cov: np.ndarray
    precision: np.ndarray

    @classmethod
    def fit(cls, codes: np.ndarray, ridge: float = 1e-6) -> LatentGaussian:
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


def _unavailable(model, background, score: str) -> ConfigError:
    if score in BACKGROUND_SCORES and hasattr(model, "log_likelihood") and background is None:
        return ConfigError(f"score {score!r} needs a background model: pass --background BG_RUN (train one with "
                           "--train-background)")
    return ConfigError(f"score {score!r} is not available for a {type(model).__name__}: "
                       f"choose from {', '.join(available_scores(model, background))}")


def anomaly_scores(model, images: np.ndarray, latent: LatentGaussian, *, scores=None, iwae_samples: int = 200,
                   elbo_samples: int = 10, seed: int = 0, background=None) -> dict[str, np.ndarray]:
    """Per-image scores (module docstring) for images in the model's range; {name: [N]}. ``background``
    (a model trained on perturbed images) enables likelihood_ratio."""
    names = available_scores(model, background)
    scores = tuple(scores or names)
    unknown = [s for s in scores if s not in names]
    if unknown:
        raise _unavailable(model, background, unknown[0])
    if background is not None:
        check_background(model, background)
    out: dict[str, np.ndarray] = {}
    mean, _ = model.encode(images)
    if "neg_elbo" in scores:
        out["neg_elbo"] = -np.asarray(model.elbo(images, num_samples=elbo_samples, seed=seed), np.float64)
    if {"iwae_nll", "complexity_corrected", "likelihood_ratio"} & set(scores):
        nll = -np.asarray(model.log_likelihood(images, num_samples=iwae_samples, seed=seed), np.float64)
        out["iwae_nll"] = nll
        if "complexity_corrected" in scores:
            out["complexity_corrected"] = nll / math.log(2.0) - complexity_bits(model.to_unit(images))
        if "likelihood_ratio" in scores:
            bg_nll = -np.asarray(background.log_likelihood(images, num_samples=iwae_samples, seed=seed), np.float64)
            out["likelihood_ratio"] = nll - bg_nll
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

    parts: dict[str, list[np.ndarray]] = {s: [] for s in available_scores(model, kw.get("background"))}
    for batch in batches:
        for s, v in anomaly_scores(model, batch.images, latent, **kw).items():
            parts[s].append(v)
        if provenance is not None:
            _keep_provenance(batch, *provenance)
    return {s: np.concatenate(v) if v else np.zeros(0) for s, v in parts.items()}


def calibration_split(n: int, seed: int = 0, fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (calibration, check) index arrays covering range(n): a seeded permutation, the first
    ceil(fraction n) for calibration. ConfigError when either part would be empty."""
    if n < 2:
        raise ConfigError(f"calibrating a threshold needs at least 2 normal (validation) images, got {n}: "
                          "use a run whose validation split holds images")
    order = np.random.default_rng(seed).permutation(n)
    cut = min(n - 1, max(1, math.ceil(fraction * n)))
    return np.sort(order[:cut]), np.sort(order[cut:])


def calibrate(normal_scores: Mapping[str, np.ndarray], fpr: float, seed: int = 0) -> dict[str, Any]:
    """Thresholds at ``fpr`` fitted on one random half of the normal scores, and the false-positive rate
    they realise on the other half: {"thresholds", "calibration_flag_rate", "realised_fpr",
    "calibration_examples", "check_examples"}."""
    n = len(next(iter(normal_scores.values())))
    cal, check = calibration_split(n, seed)
    thresholds = {s: fit_threshold(v[cal], fpr) for s, v in normal_scores.items()}
    return {"thresholds": thresholds,
            "calibration_flag_rate": {s: float(np.mean(v[cal] > thresholds[s])) for s, v in normal_scores.items()},
            "realised_fpr": {s: float(np.mean(v[check] > thresholds[s])) for s, v in normal_scores.items()},
            "calibration_examples": len(cal), "check_examples": len(check)}


def score_source(model, config, source, batches: Iterable, *, score: str, fpr: float, iwae_samples: int = 200,
                 elbo_samples: int = 10, fit_examples: int = 5000, batch_size: int = 256, seed: int = 0,
                 anomalous_labels: Sequence[int] = (), extra: Mapping[str, Any] | None = None,
                 background=None, binarize: bool | None = None) -> AnomalyReport:
    """Every available score of every image in ``batches`` (``ExampleBatch`` objects of ``source``, in the
    model's range), with thresholds at false-positive rate ``fpr``.

    Normal data is the run's own source (``config.data``, its exclusions kept): the ``LatentGaussian`` is
    fitted on the posterior means of at most ``fit_examples`` training images; the validation images
    (read ``batch_size`` at a time; binarized when ``binarize``, by default as the run binarizes; pass the
    same choice to the ``batches``) are split in two by ``seed``
    (``calibrate``): thresholds (``fit_threshold``) on one half, the realised false-positive rate on the
    other. ``score`` (one of ``available_scores(model, background)``) decides the 'anomalous' column.
    When the source has labels and both classes occur, ``summary["roc_auc"]`` gives each score's ROC-AUC
    with ``anomalous_labels`` as the positives. ``extra`` (e.g. run_dir, data, split) leads the summary.
    """
    from keras_vae.data import load_source
    from keras_vae.data.examples import iterate_examples, load_examples

    names = available_scores(model, background)
    if score not in names:
        raise _unavailable(model, background, score)
    kw = {"iwae_samples": iwae_samples, "elbo_samples": elbo_samples, "seed": seed, "background": background}
    shape, value_range = config.model.image_shape, config.model.value_range
    binarize = config.data.binarize if binarize is None else bool(binarize)
    run_source = load_source(config.data)
    train = load_examples(run_source, image_shape=shape, value_range=value_range, split="train", binarize=binarize,
                          max_examples=fit_examples)
    latent = LatentGaussian.fit(np.asarray(model.encode(train.images)[0]))
    val_scores = _score_batches(model, iterate_examples(run_source, image_shape=shape, value_range=value_range,
                                                        split="validation", batch_size=batch_size,
                                                        binarize=binarize), latent, **kw)
    calibration = calibrate(val_scores, fpr, seed)
    thresholds = calibration["thresholds"]

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
        **(extra or {}), "images": len(columns["index"]),
        "score": score, "fpr": fpr, "iwae_samples": iwae_samples, "elbo_samples": elbo_samples,
        "latent_fit_examples": len(train.images), "validation_examples": len(val_scores[names[0]]),
        "binarized": bool(binarize), "complexity": f"PNG (Pillow, zlib level {PNG_LEVEL}) of round(255 x)",
        **calibration,
        "validation_flag_rate": {s: float(np.mean(v > thresholds[s])) for s, v in val_scores.items()},
        "flag_rate": {s: float(np.mean(scores[s] > thresholds[s])) if len(scores[s]) else 0.0 for s in names},
    }
    if anomalous_labels and source.has_labels and len(columns["label"]):
        truth = np.isin(columns["label"], anomalous_labels)
        if truth.any() and (~truth).any():
            summary["anomalous_labels"] = list(anomalous_labels)
            summary["roc_auc"] = {s: roc_auc(scores[s], truth) for s in names}
    return AnomalyReport(columns, summary)


def background_config(config, images_npz: str | Path, epochs: int | None = None, seed: int | None = None):
    """The run's configuration retargeted at a perturbed copy of its data (``npy:images_npz``, no
    exclusions: the file holds only normal images), optionally with other epochs / seed."""
    from keras_vae.config import merge

    changes: dict[str, Any] = {"data": {"source": f"npy:{Path(images_npz)}", "exclude_labels": [],
                                        "max_examples": None}}
    train: dict[str, Any] = {}
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"background epochs must be >= 1, got {epochs}")
        train["epochs"] = int(epochs)
    if seed is not None:
        train["seed"] = int(seed)
    if train:
        changes["train"] = train
    return merge(config, changes)


def write_perturbed_images(config, path: str | Path, rate: float, seed: int = 0) -> int:
    """Every training-split image of the run's data (``config.data``, exclusions kept), perturbed by
    ``perturb(rate, seed)``, as uint8 in an .npz at ``path``; returns how many."""
    from keras_vae.data import load_source
    from keras_vae.data.examples import load_examples

    source = load_source(config.data)
    batch = load_examples(source, image_shape=config.model.image_shape, value_range=(0.0, 1.0), split="train")
    if not len(batch.images):
        raise ConfigError("the run's training split holds no images to train a background model on")
    noisy = quantize_8bit(perturb(batch.images, rate, seed))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=noisy)
    return len(noisy)


def train_background(run_dir: str | Path, out_dir: str | Path, *, rate: float = 0.2, epochs: int | None = None,
                     seed: int = 0, verbose: int | str = 0):
    """Ren et al.'s background model for the run at ``run_dir``: the same configuration trained on its
    training images with each pixel replaced by uniform noise at ``rate`` (``perturb``; one fixed noisy
    copy, written to ``<out_dir>.perturbed.npz`` beside the run folder). Returns the RunResult."""
    from keras_vae.runs.folder import load_run_config
    from keras_vae.training.loop import train

    config = load_run_config(run_dir)
    if not hasattr(config.model, "likelihood") or config.model.kind != "vae":
        raise ConfigError(f"a background model needs a classic VAE run; {run_dir} holds a {config.model.kind}")
    out_dir = Path(out_dir)
    data = out_dir.with_name(out_dir.name + ".perturbed.npz")
    write_perturbed_images(config, data, rate, seed)
    return train(background_config(config, data.resolve(), epochs), out_dir, verbose=verbose)
