"""The ablation of PAPER.md section 2: what each ingredient of "How to Train Your VAE" changes.

Four variants of one preset, trained with identical budgets (steps, batch size, seed, data):

    standard-kl        per-example KL(q(z|x) || N(0, I))          (the classic ELBO)
    mixture-kl         population KL of the batch mixture's moments
    mixture-kl+varreg  + the variance-collapse regularizer
    +patchgan          + the PatchGAN discriminator (the paper's full model)

Each row reports validation reconstruction error, active units, mean posterior variance, the
moments of the aggregate posterior, and a sharpness figure: the high-frequency energy of decoded
prior samples (and of reconstructions) relative to real validation images (1.0 = as sharp as data).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

import numpy as np

from keras_vae.config import RunConfig

VARIANTS: dict[str, dict[str, Any]] = {
    "standard-kl": {"kl": "standard", "use_variance_regularizer": False, "use_discriminator": False},
    "mixture-kl": {"kl": "population", "use_variance_regularizer": False, "use_discriminator": False},
    "mixture-kl+varreg": {"kl": "population", "use_variance_regularizer": True, "use_discriminator": False},
    "+patchgan": {"kl": "population", "use_variance_regularizer": True, "use_discriminator": True},
}
SAMPLE_COUNT = 256


def variant_configs(config: RunConfig, steps: int, seed: int | None = None) -> dict[str, RunConfig]:
    """The four variants of ``config``: same everything, one epoch of ``steps`` steps, only the loss switches differ."""
    seed = config.train.seed if seed is None else int(seed)
    train = dataclasses.replace(config.train, epochs=1, steps_per_epoch=int(steps), seed=seed)
    return {name: dataclasses.replace(config, loss=dataclasses.replace(config.loss, **switches), train=train)
            for name, switches in VARIANTS.items()}


def high_frequency_energy(images: np.ndarray) -> float:
    """Mean squared response of the discrete Laplacian (4x - left - right - up - down), images in [0, 1]
    NHWC; 0 for constant images, larger for sharper ones."""
    x = np.asarray(images, np.float64)
    lap = (4 * x[:, 1:-1, 1:-1] - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:])
    return float(np.mean(lap ** 2))


def summarize(model, metrics: dict[str, Any], val_images: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """One table row from a trained model, its metrics.json content and validation images (model range)."""
    real_unit = np.asarray(model.to_unit(val_images))
    real_hf = high_frequency_energy(real_unit)
    samples = np.asarray(model.to_unit(model.sample(SAMPLE_COUNT, seed=seed)))
    recon = np.asarray(model.to_unit(model.predict_in_batches(model.reconstruct, val_images)))
    diag = metrics["epochs"][-1]["diagnostics"] if metrics.get("epochs") else {}
    row = {
        "reconstruction_mae": float(np.abs(recon - real_unit).mean()),
        "active_units": diag.get("active_units"),
        "latent_dim": diag.get("latent_dim"),
        "mean_posterior_variance": diag.get("mean_posterior_variance"),
        "mixture_mean_rms": diag.get("mixture_mean_rms"),
        "mixture_variance_mean": diag.get("mixture_variance_mean"),
        "sample_sharpness": high_frequency_energy(samples) / real_hf if real_hf > 0 else float("nan"),
        "reconstruction_sharpness": high_frequency_energy(recon) / real_hf if real_hf > 0 else float("nan"),
        "disc_accuracy_real": diag.get("disc_accuracy_real"),
        "disc_accuracy_reconstructed": diag.get("disc_accuracy_reconstructed"),
        "train_seconds": metrics.get("train_seconds"),
    }
    return row


COLUMNS = [("variant", "variant"), ("reconstruction_mae", "recon MAE"), ("active_units", "active units"),
           ("mean_posterior_variance", "mean post. var"), ("mixture_mean_rms", "mixture mean (rms, prior 0)"),
           ("mixture_variance_mean", "mixture var (mean, prior 1)"), ("sample_sharpness", "sample HF / real"),
           ("reconstruction_sharpness", "recon HF / real"), ("train_seconds", "train s")]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    """A markdown table, one row per variant, columns ``COLUMNS``."""
    lines = ["| " + " | ".join(title for _, title in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    for name, row in rows.items():
        values = {"variant": name, **row}
        if row.get("active_units") is not None and row.get("latent_dim"):
            values["active_units"] = f"{row['active_units']}/{row['latent_dim']}"
        lines.append("| " + " | ".join(_cell(values.get(key)) for key, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def write_report(rows: dict[str, dict[str, Any]], out_dir: str | Path, header: dict[str, Any]) -> tuple[Path, Path]:
    """ablation.json (header + rows) and ablation.md (header + table) in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "ablation.json", out_dir / "ablation.md"
    json_path.write_text(json.dumps({**header, "variants": rows}, indent=2) + "\n")
    text = [f"# Ablation: {header.get('preset')}, {header.get('steps')} steps, batch {header.get('batch_size')}, "
            f"seed {header.get('seed')}", "", markdown_table(rows),
            "recon MAE: validation mean absolute error in [0, 1] pixel units. Active units: latent dims whose "
            "posterior mean varies across validation images by more than 0.01. Mixture moments: the aggregate "
            "posterior over validation images (prior: mean 0, variance 1). HF / real: mean squared Laplacian "
            "response of 256 prior samples (or reconstructions) divided by that of real validation images.", ""]
    md_path.write_text("\n".join(text))
    return json_path, md_path


def run_ablation(config: RunConfig, steps: int, out_dir: str | Path, seed: int | None = None,
                 train_fn: Callable | None = None, verbose: int | str = 0,
                 announce: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Train the four variants into ``out_dir/<variant>`` and write the report; returns the rows.
    ``announce(line)``, if given, hears which variant starts and how the finished one scored."""
    from keras_vae.data import make_datasets
    from keras_vae.training import train as default_train

    train_fn = train_fn or default_train
    out_dir = Path(out_dir)
    configs = variant_configs(config, steps, seed)
    rows: dict[str, dict[str, Any]] = {}
    val_images = None
    for index, (name, variant) in enumerate(configs.items(), start=1):
        if announce:
            announce(f"[{index}/{len(configs)}] {name}: {steps} steps -> {out_dir / name.replace('+', 'plus-')}")
        result = train_fn(variant, out_dir / name.replace("+", "plus-"), verbose=verbose, force=True)
        if val_images is None:
            data = make_datasets(variant.data, image_shape=variant.model.image_shape,
                                 value_range=variant.model.value_range, batch_size=variant.train.batch_size,
                                 seed=variant.train.seed)
            val_images = data.validation_arrays(max_examples=1000)[0]
        rows[name] = summarize(result.model, result.metrics, val_images, seed=variant.train.seed)
        if announce:
            row = rows[name]
            announce(f"[{index}/{len(configs)}] {name}: done in {row.get('train_seconds')} s, recon MAE "
                     f"{row['reconstruction_mae']:.4f}, active units {row.get('active_units')}/{row.get('latent_dim')}")
        write_report(rows, out_dir, _header(config, steps, variant))
    return rows


def _header(config: RunConfig, steps: int, variant: RunConfig) -> dict[str, Any]:
    return {"preset": config.preset, "steps": int(steps), "batch_size": variant.train.batch_size,
            "seed": variant.train.seed, "data": dataclasses.asdict(variant.data),
            "variants_loss_switches": VARIANTS}
