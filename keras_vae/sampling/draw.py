"""Samples for evaluation through the run's sampling entry point: its latent sampler or the prior.

``sampler=None`` uses the run folder's ``sampler.json`` (the aggregate-posterior sampler chosen after
training, see ``keras_vae.sampling.posterior``) when there is one, else the prior N(0, I); a kind
("prior", "gaussian", "gmm") uses that candidate (``samplers/KIND.json``), as ``keras-vae sample`` does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def resolve_sampler(run_dir: str | Path | None, sampler: str | None, latent_dim: int):
    """(LatentSampler, or None for the model's own prior sampling; description) for the run folder."""
    if run_dir is None:
        return None, "prior N(0, I)"
    from keras_vae.sampling.posterior import load_sampler

    latent_sampler = load_sampler(run_dir, latent_dim, sampler)
    if latent_sampler is None:
        return None, "prior N(0, I) (the run has no sampler.json)"
    origin = "sampler.json" if sampler is None else f"--sampler {sampler}"
    return latent_sampler, f"{latent_sampler.kind} sampler ({origin})"


def draw_samples(model, n: int, seed: int = 0, latent_sampler=None, batch_size: int = 256,
                 temperature: float = 1.0, labels=None) -> np.ndarray:
    """n decoded samples in [0, 1], [n, H, W, C], decoded ``batch_size`` at a time. z comes from
    ``latent_sampler`` or, without one, from the model's own sampler (``model.sample_latents``: the same
    latents as ``model.sample``); ``temperature`` scales the noise around the sampler's mean(s) as there.
    A class-conditional model decodes with ``labels`` (n integers) as ``model.sample_labels`` gives them."""
    if latent_sampler is None:
        z = np.asarray(model.sample_latents(n, seed=seed, temperature=temperature), np.float32)
    elif temperature == 1.0:
        z = np.asarray(latent_sampler.sample(n, seed), np.float32)
    else:  # the drawing rule of model.sample_latents, on this sampler
        from keras_vae.sampling.samplers import draw_noise

        eps, u = draw_noise(int(seed), int(n), latent_sampler.latent_dim)
        z = np.asarray(latent_sampler.latents(float(temperature) * eps, u), np.float32)
    if labels is None and getattr(model, "conditional", False):
        labels = model.sample_labels(n)
    given = (lambda i: {}) if labels is None else (lambda i: {"labels": np.asarray(labels)[i:i + batch_size]})
    images = [np.asarray(model.to_unit(model.decode(z[i:i + batch_size], **given(i))))
              for i in range(0, n, batch_size)]
    return np.concatenate(images)
