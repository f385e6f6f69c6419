"""One ablation variant's numbers and grids, from the functions of ``keras_vae.evaluation`` (no second
implementation): sample quality of the run's aggregate-posterior sampler and of the prior N(0, I),
reconstruction quality, and latent health.

For a trained variant in ``run_dir`` (a finished run folder: ``sampler.json`` holds the sampler that
training chose by held-out likelihood, see ``keras_vae.sampling.posterior``):

    aggregate   n samples z ~ sampler.json, decoded: FD, KID, precision/recall, sharpness
                (``evaluation.report.sample_quality`` against the validation images)
    prior       the same with z ~ N(0, I) (the paper's own code), for contrast
    reconstruction  MSE/MAE/PSNR/SSIM of decode(E[z|x]) (``evaluation.report.reconstruction_section``)
    latent      active units, posterior variance, KL, aggregate moments (``evaluation.report.latent_section``)

Both samplers' sets are ``draws`` independent draws of n samples, with the portable noise of seeds
``seed``, ``seed + 1``, ... (``evaluation.sampling.draw_samples``); every sample-quality number is the
mean over the draws (FD also with its standard deviation). They are saved to
``run_dir/ablation_samples.npz`` (float32, [0, 1]; keys ``aggregate``, ``prior``, each [draws, n, H, W, C])
so every number can be recomputed; ``grid`` samples (what ``keras-vae sample RUN --sampler KIND --n GRID --seed
SEED`` gives) are drawn as ``samples-aggregate.png`` and ``samples-prior.png`` and saved in the same
file (``grid_aggregate``, ``grid_prior``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from keras_vae.utils.files import atomic_path

SAMPLES_FILE = "ablation_samples.npz"
GRID_FILES = {"aggregate": "samples-aggregate.png", "prior": "samples-prior.png"}


def sampler_summary(sampler) -> dict[str, Any]:
    """Kind, mixture size and held-out log-likelihoods (nats per code) of a run's chosen sampler."""
    selection = dict(sampler.selection)
    return {"kind": sampler.kind, "components": sampler.num_components,
            "held_out_log_likelihood": selection.get("candidates"),
            "held_out_examples": selection.get("validation_examples")}


def save_samples(path: str | Path, **samples: np.ndarray) -> Path:
    """Write sample sets (float32 [N, H, W, C] in [0, 1]) to one .npz atomically."""
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, **{k: np.asarray(v, np.float32) for k, v in samples.items()})
    return path


def evaluate_variant(model, config, run_dir: str | Path, data, feature, *, num_samples: int, seed: int = 0,
                     grid: int = 64, draws: int = 1) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(the ablation row of one trained variant, {sampler: grid images}) (module docstring); ``data`` is an
    ``evaluation.report.EvaluationData``, ``feature`` is (feature model, FeatureNetInfo)."""
    from keras_vae.evaluation.report import latent_section, reconstruction_section, sample_quality
    from keras_vae.sampling.draw import draw_samples
    from keras_vae.ablation.plots import plot_sample_grid
    from keras_vae.sampling.posterior import load_sampler

    run_dir = Path(run_dir)
    latent_dim = config.model.latent_dim
    samplers = {"aggregate": load_sampler(run_dir, latent_dim), "prior": load_sampler(run_dir, latent_dim, "prior")}
    if samplers["aggregate"] is None:
        samplers["aggregate"] = samplers["prior"]
    feature_model = feature[0]
    row: dict[str, Any] = {"sampler": sampler_summary(samplers["aggregate"])}
    sets, grids = {}, {}
    for name, sampler in samplers.items():
        drawn = [draw_samples(model, num_samples, seed=seed + index, latent_sampler=sampler)
                 for index in range(int(draws))]
        row[f"{name}_samples"] = sample_quality(feature_model, data.real_unit, drawn, seed=seed)
        sets[name] = np.stack(drawn)
        grids[name] = images = draw_samples(model, grid, seed=seed, latent_sampler=sampler)
        what = ("the prior N(0, I)" if sampler.kind == "prior" else
                f"the aggregate-posterior sampler ({sampler.kind}, K={sampler.num_components})")
        plot_sample_grid(images, run_dir / GRID_FILES[name], f"{run_dir.name}: {what}, n={grid}, seed={seed}")
    save_samples(run_dir / SAMPLES_FILE, **sets, **{f"grid_{name}": images for name, images in grids.items()})
    row["reconstruction"] = reconstruction_section(model, data.model_images, data.real_unit)
    row["latent"] = latent_section(model, data.model_images)
    return row, grids
