"""One evaluation of a trained model: every number with its definition and sample size, as JSON and Markdown.

``evaluate_model`` returns ``{"sections": {section: {metric: {"value", "n", "definition"}}}, "notes": [...]}``
with the sections ``sample_quality`` (FD, KID, precision, recall, sharpness on the feature network),
``reconstruction`` (MSE, MAE, PSNR, SSIM, MS-SSIM on [0, 1]), ``likelihood`` (ELBO and IWAE NLL, classic
VAE only) and ``latent`` (active units, posterior variance, aggregate-posterior moments vs the prior).
``keras-vae evaluate`` writes it to ``evaluation.json`` / ``evaluation.md``; ``end_of_training`` puts one
without the likelihood (metrics.json has it already) into metrics.json and TensorBoard: sample quality as
the mean and spread over ``END_OF_TRAINING_DRAWS`` draws of ``END_OF_TRAINING_SAMPLES`` samples.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np

from keras_vae.errors import ConfigError
from keras_vae.evaluation import features as feature_lib
from keras_vae.evaluation.image_quality import MS_SSIM_MIN_SIDE, reconstruction_quality
from keras_vae.evaluation.sample_quality import frechet_distance, kernel_distance, precision_recall, sharpness_ratio

log = logging.getLogger(__name__)
PR_NEIGHBOURS = 3
KID_SUBSETS = 10
KID_SUBSET_SIZE = 200
END_OF_TRAINING_SAMPLES = 1000  # per draw: the protocol the documented FDs use (FD grows as n shrinks)
END_OF_TRAINING_DRAWS = 5  # one draw of 1000 moves the FD by 2-3 points on the embedded digits
DRAW_SPREAD = ("frechet_distance", "precision", "recall", "intensity")  # reported with their spread over draws
STANDARD_IWAE_K = 5000
NO_LIKELIHOOD_VAEGAN = (
    "no likelihood for the VAEGAN: its decoder is deterministic (no p(x|z) density; it is trained with "
    "a weighted mean absolute error, which fixes no noise scale, plus an adversarial term, which is not a "
    "log-density), so an ELBO or IWAE bound on log p(x) is not defined; compare it by sample quality and "
    "reconstruction instead")

DEFINITIONS = {
    "frechet_distance": "Frechet distance between Gaussians fitted to the feature-network embeddings of samples "
                        "and of validation images: |m1 - m2|^2 + tr(C1 + C2 - 2 (C1 C2)^1/2). Lower is better. "
                        "NOT Inception FID: compare only on the same data and feature network",
    "kid": "kernel distance: unbiased MMD^2 with the kernel (x.y/d + 1)^3 between sample and validation "
           "embeddings, mean over random subsets (Binkowski et al. 2018); ~0 for equal distributions",
    "kid_std": "standard deviation of the KID over its subsets",
    "frechet_distance_std": "standard deviation (ddof 1) of the Frechet distance over the independent sample "
                            "draws whose mean is reported (seeds seed, seed + 1, ...): its sampling spread",
    "precision_std": "standard deviation (ddof 1) of the precision over the independent sample draws",
    "recall_std": "standard deviation (ddof 1) of the recall over the independent sample draws",
    "intensity": "mean pixel value of the samples relative to the validation images', on [0, 1] (1 = as "
                 "bright as the data, < 1 darker or thinner strokes)",
    "intensity_std": "standard deviation (ddof 1) of the intensity ratio over the independent sample draws",
    "precision": f"fraction of samples inside the real manifold (union of {PR_NEIGHBOURS}-NN balls of validation "
                 "embeddings), Kynkaanniemi et al. 2019: sample fidelity",
    "recall": f"fraction of validation images inside the sample manifold ({PR_NEIGHBOURS}-NN balls of sample "
              "embeddings): sample diversity",
    "sharpness": "mean squared Laplacian of samples relative to validation images, on [0, 1] (1 = as sharp as "
                 "the data, < 1 blurrier)",
    "reconstruction_sharpness": "the same ratio for reconstructions decode(E[z|x])",
    "mse": "mean squared error between validation images and reconstructions decode(E[z|x]), [0, 1] scale",
    "mae": "mean absolute error, same pairs, [0, 1] scale",
    "psnr": "peak signal-to-noise ratio 10 log10(1 / MSE) in dB, mean over images",
    "ssim": "structural similarity (11x11 Gaussian window, sigma 1.5; tf.image.ssim), mean over images",
    "ms_ssim": "multi-scale SSIM over 5 scales (tf.image.ssim_multiscale), mean over images",
    "elbo": "evidence lower bound E_q[log p(x|z)] - KL(q(z|x) || p(z)), one sample per image, nats per image",
    "nll": "negative log-likelihood -log p(x) estimated by the IWAE bound with K importance samples "
           f"(K = {STANDARD_IWAE_K} is the literature's standard), nats per image",
    "nll_stderr": "standard error of the NLL's mean over images",
    "active_units": "latent dimensions j with Var_x[E_q(z|x) z_j] > 0.01 (Burda et al. 2016)",
    "mean_posterior_variance": "mean over images and dimensions of the posterior variance sigma^2",
    "kl_total": "KL(q(z|x) || N(0, I)) averaged over images, nats",
    "aggregate_mean_rms": "root mean square over dimensions of the aggregate posterior's mean (prior: 0)",
    "aggregate_variance_mean": "mean over dimensions of the aggregate posterior's variance "
                               "mean_x sigma^2 + Var_x mu (prior: 1)",
}


def entry(name: str, value: Any, n: int) -> dict[str, Any]:
    """One reported number: its value, the sample size it was computed on, and its definition."""
    value = float(value) if value is not None and not isinstance(value, (int, np.integer)) else value
    return {"value": int(value) if isinstance(value, (np.integer,)) else value, "n": int(n),
            "definition": DEFINITIONS[name]}


def sample_quality(feature_model, real_unit: np.ndarray, samples_unit: np.ndarray | list[np.ndarray],
                   seed: int = 0) -> dict:
    """FD, KID, precision, recall, sharpness and intensity of samples against real images (both [N, H, W, C]
    in [0, 1]). A list of sample sets (independent draws) gives each metric's mean over the sets, plus the
    standard deviation across them of the FD, precision, recall and intensity (``NAME_std``)."""
    sets = samples_unit if isinstance(samples_unit, list) else [samples_unit]
    real = feature_lib.embed(feature_model, real_unit)
    real_intensity = float(np.mean(real_unit))
    per_set = []
    for index, samples in enumerate(sets):
        fake = feature_lib.embed(feature_model, samples)
        kid, kid_std = kernel_distance(real, fake, subsets=KID_SUBSETS, subset_size=KID_SUBSET_SIZE, seed=seed + index)
        precision, recall = precision_recall(real, fake, k=PR_NEIGHBOURS)
        per_set.append({"frechet_distance": frechet_distance(real, fake), "kid": kid, "kid_std": kid_std,
                        "precision": precision, "recall": recall,
                        "sharpness": sharpness_ratio(samples, real_unit),
                        "intensity": float(np.mean(samples)) / real_intensity if real_intensity > 0 else float("nan")})
    mean = {name: float(np.mean([values[name] for values in per_set])) for name in per_set[0]}
    n = len(sets[0])
    sizes = {"frechet_distance": n, "kid": min(n, len(real), KID_SUBSET_SIZE), "kid_std": KID_SUBSETS,
             "precision": n, "recall": len(real), "sharpness": n, "intensity": n}
    section = {}
    for name, size in sizes.items():
        section[name] = entry(name, mean[name], size)
        if len(sets) > 1 and name in DRAW_SPREAD:
            section[f"{name}_std"] = entry(f"{name}_std", np.std([values[name] for values in per_set], ddof=1),
                                           len(sets))
    return section


def reconstruction_section(model, images: np.ndarray, real_unit: np.ndarray) -> dict:
    """MSE/MAE/PSNR/SSIM(/MS-SSIM) of reconstructions, and their sharpness relative to the images."""
    quality = reconstruction_quality(model, images)
    n = quality["examples"]
    section = {name: entry(name, quality[name], n) for name in ("mse", "mae", "psnr", "ssim", "ms_ssim")
               if name in quality}
    recon = model.predict_in_batches(lambda x: model.to_unit(model.reconstruct(x)), images)
    section["reconstruction_sharpness"] = entry("reconstruction_sharpness", sharpness_ratio(recon, real_unit), n)
    return section


def likelihood_section(model, images: np.ndarray, num_samples: int, seed: int = 0, progress=None) -> dict:
    """ELBO and IWAE NLL (classic VAE) on images in the model's input form; ``progress(n)`` after each batch."""
    from keras_vae.evaluation.metrics import likelihood_evaluation

    result = likelihood_evaluation(model, images, num_samples=num_samples, seed=seed, progress=progress)
    n = result["examples"]
    section = {"elbo": entry("elbo", result["elbo"], n), "nll": entry("nll", result["nll"], n),
               "nll_stderr": entry("nll_stderr", result["log_likelihood_stderr"], n)}
    section["nll"]["iwae_k"] = result["iwae_k"]
    return section


def latent_section(model, images: np.ndarray) -> dict:
    """Latent health on images: active units, posterior variance, KL, aggregate-posterior moments vs N(0, I)."""
    from keras_vae.evaluation.metrics import encode_all, posterior_diagnostics

    diag = posterior_diagnostics(*encode_all(model, images))
    n = len(images)
    section = {name: entry(name, diag[name], n) for name in ("active_units", "mean_posterior_variance", "kl_total")}
    section["active_units"]["of"] = diag["latent_dim"]
    section["aggregate_mean_rms"] = entry("aggregate_mean_rms", diag["mixture_mean_rms"], n)
    section["aggregate_variance_mean"] = entry("aggregate_variance_mean", diag["mixture_variance_mean"], n)
    return section


@dataclasses.dataclass
class EvaluationData:
    """What an evaluation reads: images as the model sees them (e.g. binarized, model range) for the
    likelihood and latent statistics, and clean [0, 1] images for every image metric."""

    model_images: np.ndarray
    real_unit: np.ndarray
    description: str


def evaluation_data(config, max_examples: int | None = None) -> EvaluationData:
    """Validation images of a run's data: model input form, and un-binarized [0, 1] images."""
    from keras_vae.data import make_datasets

    def arrays(data_config, value_range):
        data = make_datasets(data_config, image_shape=config.model.image_shape, value_range=value_range,
                             batch_size=config.train.batch_size, seed=config.train.seed)
        return data.validation_arrays(max_examples)[0], data.description

    model_images, description = arrays(config.data, config.model.value_range)
    if config.data.binarize or tuple(config.model.value_range) != (0.0, 1.0):
        real_unit, _ = arrays(dataclasses.replace(config.data, binarize=False), (0.0, 1.0))
    else:
        real_unit = model_images
    return EvaluationData(model_images, real_unit, description)


def evaluate_model(model, config, data: EvaluationData, *, num_samples: int, seed: int = 0,
                   latent_sampler=None, sampler_description: str = "prior N(0, I)", feature=None,
                   iwae_samples: int | None = None, likelihood_examples: int | None = None,
                   progress: Callable[[str], None] | None = None, report=None, draws: int = 1) -> dict[str, Any]:
    """Every metric of this module for one model. ``feature`` is (model, FeatureNetInfo) or (None, reason);
    ``draws`` > 1 draws that many independent sets of ``num_samples`` (seeds seed, seed + 1, ...) and
    reports sample-quality means and the FD's spread over them; ``iwae_samples=None`` skips the likelihood.
    ``progress(stage)`` is called after each stage;
    ``report`` (a keras_vae.utils.progress.Reporter) announces each stage, the IWAE estimate with a bar."""
    from keras_vae.sampling.draw import draw_samples
    from keras_vae.utils.progress import Reporter

    report = report if report is not None else Reporter(enabled=False)
    step = progress or (lambda stage: None)
    notes, sections = [], {}
    feature_model, feature_info = feature if feature is not None else (None, "no feature network")
    draws = int(draws)
    if draws < 1:
        raise ConfigError(f"the number of sample draws must be >= 1, got {draws}")
    with report.phase(f"{draws} x {num_samples} samples ({sampler_description})", draws) as bar:
        sets = []
        for index in range(draws):
            sets.append(draw_samples(model, num_samples, seed=seed + index, latent_sampler=latent_sampler))
            bar.update()
    step("samples")
    report.line("sample quality (FD, KID, precision/recall, sharpness) and reconstruction metrics ...")
    if feature_model is not None:
        sections["sample_quality"] = sample_quality(feature_model, data.real_unit, sets, seed=seed)
        drawn = (f"{num_samples} samples" if len(sets) == 1 else
                 f"means over {len(sets)} independent draws of {num_samples} samples "
                 f"(seeds {seed}-{seed + len(sets) - 1})")
        notes.append(f"sample quality: {drawn} ({sampler_description}) against "
                     f"{len(data.real_unit)} validation images, on the in-house feature network trained on "
                     f"{feature_info.trained_on} (task: {feature_info.task}, validation accuracy "
                     f"{feature_info.validation_accuracy:.3f}); Frechet distances on it are not Inception FID")
    else:
        sharpness = float(np.mean([sharpness_ratio(images, data.real_unit) for images in sets]))
        intensity = float(np.mean([np.mean(images) for images in sets]) / np.mean(data.real_unit))
        sections["sample_quality"] = {"sharpness": entry("sharpness", sharpness, num_samples),
                                      "intensity": entry("intensity", intensity, num_samples)}
        notes.append(f"no FD/KID/precision/recall: {feature_info}")
    step("sample quality")
    sections["reconstruction"] = reconstruction_section(model, data.model_images, data.real_unit)
    if "ms_ssim" not in sections["reconstruction"]:
        notes.append(f"no MS-SSIM: it needs images of at least {MS_SSIM_MIN_SIDE}x{MS_SSIM_MIN_SIDE} "
                     "(5 scales of an 11x11 window)")
    if config.data.binarize:
        notes.append("reconstructions are of the (binarized) model inputs, compared with the un-binarized "
                     "[0, 1] images: the decoder mean estimates pixel intensities")
    step("reconstruction")
    if not hasattr(model, "log_likelihood"):
        notes.append(NO_LIKELIHOOD_VAEGAN)
    elif iwae_samples:
        images = data.model_images[:likelihood_examples] if likelihood_examples else data.model_images
        with report.phase(f"IWAE estimate of log p(x) (K={iwae_samples}, {len(images)} examples)",
                          len(images)) as bar:
            sections["likelihood"] = likelihood_section(model, images, iwae_samples, seed=seed, progress=bar.update)
        if iwae_samples != STANDARD_IWAE_K:
            notes.append(f"IWAE NLL with K = {iwae_samples}; the literature's standard is K = {STANDARD_IWAE_K} "
                         "(larger K gives a tighter, lower estimate)")
    step("likelihood")
    sections["latent"] = latent_section(model, data.model_images)
    step("latent")
    return {"data": data.description, "model_kind": config.model.kind, "sampler": sampler_description,
            "seed": int(seed), "sections": sections, "notes": notes}


def evaluate_run(run_dir: str | Path, *, num_samples: int = 1000, draws: int = 1, sampler: str | None = None,
                 likelihood: bool = True, iwae_samples: int | None = None, likelihood_examples: int | None = None,
                 retrain_features: bool = False, seed: int = 0, report=None) -> dict[str, Any]:
    """``evaluate_model`` of a run folder on the validation split of its data: ``{"run_dir": ..., **result}``.

    ``sampler`` picks the latent sampler as ``keras_vae.sampling.draw.resolve_sampler`` does (None: the
    run's sampler.json, else the prior). The feature network is the run's (trained on its data and cached
    in RUN/features/ when missing, or again with ``retrain_features``). ``likelihood=False`` skips the ELBO
    and IWAE NLL; otherwise ``iwae_samples`` and ``likelihood_examples`` default to the run's
    ``train.iwae_samples`` and ``train.iwae_examples``. ``report`` (a keras_vae.utils.progress.Reporter)
    announces each stage.
    """
    from keras_vae.runs.folder import load_run
    from keras_vae.sampling.draw import resolve_sampler
    from keras_vae.utils.progress import Reporter

    config, model = load_run(run_dir)
    latent_sampler, description = resolve_sampler(run_dir, sampler, config.model.latent_dim)
    report = report if report is not None else Reporter(enabled=False)
    with report.phase("feature network", 1):
        feature = feature_lib.feature_net_for_run(config, run_dir, train_if_missing=True, retrain=retrain_features)
    result = evaluate_model(
        model, config, evaluation_data(config), num_samples=num_samples, seed=seed,
        latent_sampler=latent_sampler, sampler_description=description, feature=feature,
        iwae_samples=(iwae_samples or config.train.iwae_samples) if likelihood else None,
        likelihood_examples=likelihood_examples or config.train.iwae_examples, report=report, draws=draws)
    return {"run_dir": str(run_dir), **result}


def write_evaluation(result: dict[str, Any], path: str | Path, title: str = "Evaluation") -> tuple[Path, Path]:
    """Write ``result`` as JSON at ``path`` and as Markdown (``to_markdown``) beside it with suffix .md, both
    atomically; returns both paths."""
    from keras_vae.utils.files import atomic_path, write_json

    path = Path(path)
    write_json(path, result)
    with atomic_path(path.with_suffix(".md")) as tmp:
        tmp.write_text(to_markdown(result, title=title))
    return path, path.with_suffix(".md")


def scalars(result: dict[str, Any]) -> dict[str, float]:
    """Flat {section/metric: value} of an evaluation (for TensorBoard and summaries)."""
    return {f"{section}/{name}": float(item["value"]) for section, metrics in result["sections"].items()
            for name, item in metrics.items() if item["value"] is not None}


def to_markdown(result: dict[str, Any], title: str = "Evaluation") -> str:
    """The evaluation as a Markdown report: one table per section (value, n, definition), then the notes."""
    lines = [f"# {title}", "", f"Data: {result['data']}. Model: {result['model_kind']}. Samples: {result['sampler']}, "
             f"seed {result['seed']}.", ""]
    for section, metrics in result["sections"].items():
        lines += [f"## {section.replace('_', ' ')}", "", "| metric | value | n | definition |", "|---|---|---|---|"]
        for name, item in metrics.items():
            value = item["value"]
            shown = f"{value:.4g}" if isinstance(value, float) else str(value)
            if "of" in item:
                shown += f" of {item['of']}"
            if "iwae_k" in item:
                shown += f" (K = {item['iwae_k']})"
            lines.append(f"| {name} | {shown} | {item['n']} | {item['definition']} |")
        lines.append("")
    if result["notes"]:
        lines += ["## Notes", ""] + [f"- {note}" for note in result["notes"]] + [""]
    return "\n".join(lines)


def write_tensorboard(result: dict[str, Any], log_dir: str | Path, step: int) -> None:
    """Write ``scalars(result)`` as TensorBoard scalars under ``log_dir`` at ``step``."""
    import tensorflow as tf

    writer = tf.summary.create_file_writer(str(log_dir))
    with writer.as_default():
        for name, value in scalars(result).items():
            tf.summary.scalar(f"evaluation/{name}", value, step=step)
    writer.flush()
    writer.close()


def end_of_training(model, config, out_dir: str | Path, step: int = 0, draws: int = END_OF_TRAINING_DRAWS,
                    num_samples: int = END_OF_TRAINING_SAMPLES) -> dict[str, Any]:
    """The evaluation without the likelihood, sample quality as the mean and spread over ``draws`` draws of
    ``num_samples`` samples (seeds train.seed, train.seed + 1, ...), also written to TensorBoard
    (``out_dir/logs/evaluation``); errors are logged and reported, never fatal to training."""
    try:
        feature = feature_lib.feature_net_for_run(config, out_dir, train_if_missing=False)
        data = evaluation_data(config)
        from keras_vae.sampling.draw import resolve_sampler

        latent_sampler, description = resolve_sampler(out_dir, None, config.model.latent_dim)
        result = evaluate_model(model, config, data, num_samples=num_samples, seed=config.train.seed,
                                latent_sampler=latent_sampler, sampler_description=description, feature=feature,
                                draws=draws)
        write_tensorboard(result, Path(out_dir) / "logs" / "evaluation", step)
        return result
    except Exception as exc:  # noqa: BLE001 - the model is saved already; a failed extra must not lose the run
        log.warning("end-of-training evaluation failed: %s", exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
