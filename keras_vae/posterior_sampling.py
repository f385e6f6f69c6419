"""After training: refresh BatchNorm statistics, fit latent samplers on the aggregate posterior of
the training set, store them with the run, and load them back.

    RUN_DIR/sampler.json              the sampler ``sample()`` uses by default: the candidate whose
                                      density gives held-out codes the highest likelihood
    RUN_DIR/samplers/{prior,gaussian,gmm}.json   every candidate, for ``--sampler KIND``

Steps (``finish_training``): (1) for models trained on batch statistics, the BatchNorm moving
statistics are recomputed as the average batch statistics over training batches, so that inference
mode describes the model training optimised; (2) the training images are encoded in inference mode
(posterior means mu_i and variances sigma_i^2); (3) ``keras_vae.samplers.fit_samplers`` fits
N(m, C) and a Gaussian mixture (K by held-out likelihood); held-out codes are
z = mu + sigma * eps of the validation images; (4) ``choose_sampler`` picks the best of prior,
Gaussian and mixture by the same held-out likelihood.
"""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from keras_vae.errors import ArtifactError, ConfigError, choices
from keras_vae.samplers import (KINDS, SAMPLER_FILE, LatentSampler, choose_sampler, fit_samplers,
                                prior_sampler)

SAMPLERS_DIR = "samplers"
RECOMPUTE_EXAMPLES = 5000  # training images whose batch statistics refresh BatchNorm
FIT_EXAMPLES = 20000  # training images whose posteriors the samplers are fitted on


def _limited(batches: Iterable, max_examples: int) -> Iterable[np.ndarray]:
    """Batches (images, or (images, ...) tuples) as NumPy images until ``max_examples`` are reached."""
    seen = 0
    for batch in batches:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        images = np.asarray(images)[: max_examples - seen]
        if len(images) == 0:
            return
        seen += len(images)
        yield images
        if seen >= max_examples:
            return


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


def fit_model_samplers(model, train_batches: Iterable, validation_images: np.ndarray,
                       seed: int = 0) -> tuple[LatentSampler, dict[str, LatentSampler]]:
    """(chosen sampler, {kind: candidate}) for ``model`` from its training and validation images."""
    means, variances = encode_batches(model, train_batches)
    held_out = held_out_codes(model, validation_images, seed=seed)
    candidates = fit_samplers(means, variances, held_out, seed=seed)
    return choose_sampler(candidates, held_out), candidates


def save_samplers(run_dir: str | Path, chosen: LatentSampler, candidates: dict[str, LatentSampler]) -> None:
    """Write ``sampler.json`` and ``samplers/KIND.json`` (each atomically)."""
    run_dir = Path(run_dir)
    for kind, sampler in candidates.items():
        sampler.save(run_dir / SAMPLERS_DIR / f"{kind}.json")
    chosen.save(run_dir / SAMPLER_FILE)


def remove_samplers(run_dir: str | Path) -> None:
    """Delete a run folder's samplers (before it is overwritten)."""
    run_dir = Path(run_dir)
    (run_dir / SAMPLER_FILE).unlink(missing_ok=True)
    shutil.rmtree(run_dir / SAMPLERS_DIR, ignore_errors=True)


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
    if not path.is_file():
        raise ArtifactError(f"run folder {str(run_dir)!r} has no {kind!r} sampler ({SAMPLERS_DIR}/{kind}.json): "
                            "it was trained before samplers were fitted; use --sampler prior or re-run training")
    return LatentSampler.load(path, latent_dim)


def finish_training(model, train_dataset: Iterable, validation_images: np.ndarray, out_dir: str | Path,
                    seed: int = 0) -> dict[str, Any]:
    """BatchNorm refresh + sampler fit (module docstring); sets ``model.latent_sampler`` and writes
    the samplers into ``out_dir``. Returns what metrics.json records about it."""
    from keras_vae.metrics import posterior_diagnostics

    recomputed = model.recompute_batch_norm(_limited(train_dataset, RECOMPUTE_EXAMPLES), seed=seed)
    means, variances = encode_batches(model, _limited(train_dataset, FIT_EXAMPLES))
    held_out = held_out_codes(model, validation_images, seed=seed)
    candidates = fit_samplers(means, variances, held_out, seed=seed)
    chosen = choose_sampler(candidates, held_out)
    save_samplers(out_dir, chosen, candidates)
    model.latent_sampler = chosen
    diagnostics = posterior_diagnostics(means, np.log(variances))
    return {
        "batch_norm": {"recomputed_from_batches": int(recomputed),
                       "mode": getattr(model.model_config, "bn_mode", "none")},
        "sampler": {"chosen": chosen.kind, "components": chosen.num_components,
                    "fitted_on_examples": int(len(means)), **chosen.selection},
        "training_posterior": {k: v for k, v in diagnostics.items() if k != "kl_per_dimension"},
    }
