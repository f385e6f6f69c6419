"""Latent samplers of a trained model: encode its training set, fit the candidates on the aggregate
posterior, store them with the run and load them back (``keras_vae.training.after_fit`` runs it).

    RUN_DIR/sampler.json              the sampler ``sample()`` uses by default: the candidate whose
                                      density gives held-out codes the highest likelihood
    RUN_DIR/samplers/{prior,gaussian,gmm,flow}.json   every candidate, for ``--sampler KIND`` (flow: on request)

Steps (``keras_vae.training.after_fit.finish_training``): (1) for models trained on batch statistics, the BatchNorm moving
statistics are recomputed as the average batch statistics over training batches, so that inference
mode describes the model training optimised; (2) the training images are encoded in inference mode
(posterior means mu_i and variances sigma_i^2); (3) ``keras_vae.sampling.samplers.fit_samplers`` fits
N(m, C) and a Gaussian mixture (K by held-out likelihood); held-out codes are
z = mu + sigma * eps of the validation images; (4) where a feature network fits the images, the mixture
is widened (``samplers.widened``) by the covariance scale whose decoded samples best match held-out
training images (``keras_vae.training.after_fit.choose_covariance_scale``); (5) ``choose_sampler`` picks
the best of prior, Gaussian and mixture by the same held-out likelihood.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from keras_vae.errors import ArtifactError, ConfigError, choices
from keras_vae.sampling.samplers import (KINDS, SAMPLER_FILE, LatentSampler, prior_sampler)

SAMPLERS_DIR = "samplers"
def encode_batches(model, batches: Iterable) -> tuple[np.ndarray, np.ndarray]:
    """Inference-mode posterior means and variances [N, D] of all images in ``batches``."""
    means, variances = [], []
    for images in batches:
        mean, log_var = model.encode(images)
        means.append(np.asarray(mean, np.float64))
        variances.append(np.exp(np.asarray(log_var, np.float64)))
    if not means:
        raise ArtifactError("no training images to fit the latent sampler on")
    return np.concatenate(means), np.concatenate(variances)


def held_out_codes(model, images: np.ndarray, seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """z = mu + sigma * eps for held-out images (inference mode; eps from NumPy with ``seed``)."""
    mean, variance = encode_batches(model, (images[i:i + batch_size] for i in range(0, len(images), batch_size)))
    eps = np.random.default_rng(seed).standard_normal(mean.shape)
    return mean + np.sqrt(variance) * eps


def save_samplers(run_dir: str | Path, chosen: LatentSampler, candidates: dict[str, LatentSampler]) -> None:
    """Write ``sampler.json`` and ``samplers/KIND.json`` (each atomically)."""
    run_dir = Path(run_dir)
    for kind, sampler in candidates.items():
        sampler.save(run_dir / SAMPLERS_DIR / f"{kind}.json")
    chosen.save(run_dir / SAMPLER_FILE)


def load_sampler(run_dir: str | Path, latent_dim: int, kind: str | None = None) -> LatentSampler | None:
    """The run's sampler: ``sampler.json`` (kind None; None when the run predates samplers),
    the prior, or the stored candidate ``samplers/KIND.json``."""
    run_dir = Path(run_dir)
    if kind is None:
        path = run_dir / SAMPLER_FILE
        return LatentSampler.load(path, latent_dim) if path.is_file() else None
    if kind not in KINDS:
        raise ConfigError(f"unknown sampler {kind!r}: choose {choices(KINDS)}")
    if kind == "prior":
        return prior_sampler(latent_dim)
    path = run_dir / SAMPLERS_DIR / f"{kind}.json"
    if not path.is_file() and kind == "flow":
        raise ArtifactError(f"run folder {str(run_dir)!r} has no 'flow' sampler ({SAMPLERS_DIR}/flow.json): the flow "
                            "is fitted only on request; add it with keras_vae.training.after_fit.add_flow_sampler(RUN) "
                            "or train with --set train.flow_steps=3000")
    if not path.is_file():
        raise ArtifactError(f"run folder {str(run_dir)!r} has no {kind!r} sampler ({SAMPLERS_DIR}/{kind}.json): "
                            "it was trained before samplers were fitted; use --sampler prior or re-run training")
    return LatentSampler.load(path, latent_dim)
