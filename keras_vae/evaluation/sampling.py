"""Samples for evaluation through the run's sampling entry point: the prior or the run's latent sampler.

``sampler=None`` uses the run folder's ``sampler.json`` (an aggregate-posterior sampler, see
``keras_vae.samplers``) when there is one, else the prior N(0, I); ``"prior"`` always uses the prior;
any other kind ("gaussian", "gmm") needs a ``sampler.json`` of that kind in the run folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from keras_vae.errors import ArtifactError, ConfigError

SAMPLER_FILE = "sampler.json"
SAMPLER_KINDS = ("prior", "gaussian", "gmm")


def _load_run_sampler(path: Path):
    try:
        from keras_vae.samplers import LatentSampler
    except ImportError:
        raise ArtifactError(f"{str(path)!r} needs keras_vae.samplers, which this installation lacks: "
                            "use --sampler prior") from None
    return LatentSampler.load(path)


def resolve_sampler(run_dir: str | Path | None, sampler: str | None):
    """(LatentSampler or None for the prior, description) for ``sampler`` and the run folder."""
    if sampler is not None and sampler not in SAMPLER_KINDS:
        raise ConfigError(f"unknown sampler {sampler!r}: choose 'prior', 'gaussian' or 'gmm'")
    path = Path(run_dir) / SAMPLER_FILE if run_dir is not None else None
    has_file = path is not None and path.is_file()
    if sampler == "prior" or (sampler is None and not has_file):
        return None, "prior N(0, I)"
    if not has_file:
        raise ArtifactError(f"--sampler {sampler} needs {SAMPLER_FILE} in the run folder, and "
                            f"{str(run_dir)!r} has none: use --sampler prior")
    latent_sampler = _load_run_sampler(path)
    kind = getattr(latent_sampler, "kind", None)
    if sampler is not None and kind != sampler:
        raise ArtifactError(f"the run's {SAMPLER_FILE} holds a {kind!r} sampler, not {sampler!r}: "
                            f"use --sampler {kind} or --sampler prior")
    return latent_sampler, f"{kind} sampler from {SAMPLER_FILE}"


def draw_samples(model, n: int, seed: int = 0, latent_sampler=None, batch_size: int = 256) -> np.ndarray:
    """n decoded samples in [0, 1], [n, H, W, C]: z from ``latent_sampler.sample(n, seed)`` or the prior."""
    if latent_sampler is None:
        z = np.asarray(model.sample_latents(n, seed=seed), np.float32)
    else:
        z = np.asarray(latent_sampler.sample(n, seed), np.float32)
    images = [np.asarray(model.to_unit(model.decode(z[i:i + batch_size]))) for i in range(0, n, batch_size)]
    return np.concatenate(images)
