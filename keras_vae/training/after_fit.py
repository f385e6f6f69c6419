"""After the epochs: refresh BatchNorm statistics, fit the latent samplers on the aggregate posterior
of the training set (``keras_vae.sampling.posterior``), widen the mixture by the covariance scale whose
decoded samples best match held-out training images, and record the posterior's health.

Why the widening: the mixture's size and shrinkage are chosen by the likelihood of held-out codes, which
rewards components as tight as the codes allow; decoded, such a mixture's samples are less diverse than
the digits (the default VAEGAN: recall 0.81, Frechet distance 20.3 against 16.3 for its own decoded
training codes). ``choose_covariance_scale`` scores scales 1, 1.1, ... by the Frechet distance of decoded
samples against training images whose codes the mixture was not fitted on (never the validation images
the evaluation reports on), and keeps the best; a scale >= 1 only moves samples away from the training
codes, so it cannot reward replaying them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from keras_vae.evaluation.metrics import posterior_diagnostics
from keras_vae.sampling.flow_fit import fit_flow, flow_fit_steps
from keras_vae.sampling.posterior import encode_batches, held_out_codes, save_samplers
from keras_vae.sampling.samplers import LatentSampler, choose_sampler, fit_gmm, fit_samplers, gmm_search_steps, widened

RECOMPUTE_EXAMPLES = 2048  # training images whose batch statistics refresh BatchNorm (training batch size)
FIT_EXAMPLES = 20000  # training images whose posteriors the samplers are fitted on
ENCODE_BATCH = 512  # images per encoder call when encoding the training set


def _limited(batches: Iterable, max_examples: int, with_labels: bool = False) -> Iterable:
    """Batches (images, or (images, labels, ...) tuples) as NumPy images until ``max_examples`` are reached (the
    last batch cut); ``with_labels``: (images, labels) pairs, cut alike."""
    seen = 0
    for batch in batches:
        parts = tuple(batch) if isinstance(batch, (tuple, list)) else (batch,)
        parts = tuple(np.asarray(part)[: max_examples - seen] for part in parts[:2 if with_labels else 1])
        if len(parts[0]) == 0:
            return
        seen += len(parts[0])
        yield parts if with_labels else parts[0]
        if seen >= max_examples:
            return


def _rebatched(batches: Iterable[np.ndarray], size: int) -> Iterable[np.ndarray]:
    """The same images in batches of ``size`` (the last one smaller): fewer eager encoder calls."""
    pending, count = [], 0
    for images in batches:
        pending.append(images)
        count += len(images)
        if count >= size:
            joined = np.concatenate(pending)
            for start in range(0, len(joined) - size + 1, size):
                yield joined[start:start + size]
            rest = joined[(len(joined) // size) * size:]
            pending, count = ([rest], len(rest)) if len(rest) else ([], 0)
    if count:
        yield np.concatenate(pending)


FINISH_STEPS_BEFORE_SEARCH = 2  # BatchNorm refresh; encoding the training set and the held-out codes
COVARIANCE_SCALES = (1.0, 1.1, 1.2, 1.3, 1.4)  # candidate widenings of the mixture (1: as fitted)
SCALE_REFERENCE_EXAMPLES = 500  # training images held out of the mixture fit, the scales' reference
SCALE_SAMPLES = 1000  # samples per draw and scale
SCALE_DRAWS = 2  # draws per scale (one draw's FD moves by 2-3 points)
SCALE_SEED_OFFSET = 1000  # the draws use seeds seed + 1000, ...: never the evaluation's seed .. seed + 4


def finish_training_steps(flow_steps: int = 0) -> int:
    """Units of work ``finish_training`` reports to its ``progress``: the steps before the mixture search,
    the search's (size, shrinkage) grid, the covariance scale, the flow's evaluations (``flow_steps`` > 0)
    and saving."""
    return FINISH_STEPS_BEFORE_SEARCH + gmm_search_steps() + 1 + flow_fit_steps(flow_steps) + 1


def choose_covariance_scale(model, mixture: LatentSampler, means: np.ndarray, variances: np.ndarray,
                            reference_unit: np.ndarray, held_out: np.ndarray, feature_model, seed: int = 0,
                            scales=COVARIANCE_SCALES, samples: int = SCALE_SAMPLES,
                            draws: int = SCALE_DRAWS) -> dict[str, Any]:
    """The covariance scale for ``mixture`` (fitted on all ``means``). The first len(``reference_unit``) codes
    are held out (``reference_unit``: their images [R, H, W, C] on [0, 1]; the training set is shuffled, so
    they are a random subset), the mixture's (size, shrinkage) is fitted again on the other codes, and each
    scale s widens that fit (``widened``); its score is the mean Frechet distance (``feature_model``'s
    features) between ``draws`` sets of ``samples`` decoded samples and the held-out images. Returns
    {"scale" (the best; ties: the smaller), "scores" {scale: FD}, "reference_examples", "samples",
    "draws", "criterion"}."""
    from keras_vae.evaluation.features import embed
    from keras_vae.evaluation.sample_quality import frechet_distance
    from keras_vae.sampling.draw import draw_samples

    held = len(reference_unit)
    if held < 2 or len(means) < 2 * held:
        raise ValueError(f"need at least twice as many training codes as held-out images, got {len(means)} "
                         f"codes and {held} images")
    shrinkage = float(mixture.selection.get("chosen_shrinkage", 0.0))
    split_fit = fit_gmm(means[held:], variances[held:], held_out, components=(mixture.num_components,),
                        shrinkage=(shrinkage,), seed=seed)
    real = embed(feature_model, reference_unit)
    scores = {}
    for scale in scales:
        candidate = widened(split_fit, scale)
        fds = [frechet_distance(embed(feature_model, draw_samples(
            model, samples, seed=seed + SCALE_SEED_OFFSET + draw, latent_sampler=candidate, batch_size=ENCODE_BATCH)),
            real) for draw in range(draws)]
        scores[f"{float(scale):g}"] = float(np.mean(fds))
    best = min(scores, key=lambda key: (scores[key], float(key)))
    return {"scale": float(best), "scores": scores, "reference_examples": int(held), "samples": int(samples),
            "draws": int(draws),
            "criterion": "mean Frechet distance of decoded samples against held-out training images"}


def _scale_feature_model(out_dir: Path):
    """The feature network the run's evaluation uses (the shipped MNIST one, or one cached in the run), or
    (None, reason)."""
    from keras_vae.config import RunConfig
    from keras_vae.errors import KerasVAEError
    from keras_vae.evaluation.features import feature_net_for_run
    from keras_vae.runs.folder import CONFIG_FILE
    from keras_vae.utils.files import read_json

    if not (out_dir / CONFIG_FILE).is_file():  # written when training starts; model.keras comes later
        return None, "no config.json in the run folder"
    try:
        model, info = feature_net_for_run(RunConfig.from_dict(read_json(out_dir / CONFIG_FILE)), out_dir,
                                          train_if_missing=False)
    except KerasVAEError as exc:  # the scale is an extra: without a feature network the mixture stays as fitted
        return None, str(exc)
    return (model, None) if model is not None else (None, info)


def finish_training(model, train_dataset: Iterable, validation_images: np.ndarray, out_dir: str | Path,
                    seed: int = 0, progress: Callable[[int], None] | None = None,
                    flow_steps: int = 0, feature_model="run") -> dict[str, Any]:
    """BatchNorm refresh + sampler fit (``keras_vae.sampling.posterior``); sets ``model.latent_sampler`` and writes
    the samplers into ``out_dir``. The mixture is widened by ``choose_covariance_scale`` where a feature
    network fits the images (``feature_model``: "run" = the one the run's evaluation uses, None = no
    widening) and the training images are not binarized (their intensities are the reference). With
    ``flow_steps`` > 0 (``train.flow_steps``) a RealNVP flow (``keras_vae.sampling.flow_fit``) joins the
    candidates. Returns what metrics.json records about it.
    ``progress(n)`` is called as the ``finish_training_steps(flow_steps)`` units are done."""
    step = progress or (lambda n=1: None)
    out_dir = Path(out_dir)
    scale = {"scale": 1.0}
    if isinstance(feature_model, str):
        feature_model, scale["skipped"] = _scale_feature_model(out_dir)
    elif feature_model is None:
        scale["skipped"] = "no feature network"
    recomputed = model.recompute_batch_norm(_limited(train_dataset, RECOMPUTE_EXAMPLES), seed=seed)
    step(1)
    reference: list[np.ndarray] = []  # the first SCALE_REFERENCE_EXAMPLES training images, kept for the scale

    def kept(batches):
        count = 0
        for batch in batches:
            if feature_model is not None and count < SCALE_REFERENCE_EXAMPLES:
                reference.append(np.asarray(batch[:SCALE_REFERENCE_EXAMPLES - count]))
                count += len(reference[-1])
            yield batch

    means, variances = encode_batches(model, kept(_rebatched(_limited(train_dataset, FIT_EXAMPLES), ENCODE_BATCH)))
    held_out = held_out_codes(model, validation_images, seed=seed)
    step(1)
    candidates = fit_samplers(means, variances, held_out, seed=seed, progress=progress)
    low, high = model.value_range
    reference_images = np.concatenate(reference) if reference else None
    if feature_model is not None and np.isin(reference_images, (low, high)).all():
        feature_model, scale["skipped"] = None, "binarized training images"
    if feature_model is not None and len(means) < 2 * SCALE_REFERENCE_EXAMPLES:
        feature_model, scale["skipped"] = None, f"fewer than {2 * SCALE_REFERENCE_EXAMPLES} training codes"
    if feature_model is not None:
        unit = np.clip((reference_images.astype(np.float32) - low) / (high - low), 0.0, 1.0)
        scale = choose_covariance_scale(model, candidates["gmm"], means, variances, unit, held_out, feature_model,
                                        seed=seed)
        gmm = candidates["gmm"]
        candidates["gmm"] = dataclasses.replace(widened(gmm, scale["scale"]),
                                                selection={**gmm.selection, "covariance_scale": scale})
    step(1)
    if flow_steps > 0:
        candidates["flow"] = fit_flow(means, variances, held_out, steps=flow_steps, base=candidates["gmm"],
                                      seed=seed, progress=progress)
    chosen = choose_sampler(candidates, held_out)
    save_samplers(out_dir, chosen, candidates)
    step(1)
    model.latent_sampler = chosen
    diagnostics = posterior_diagnostics(means, np.log(variances))
    return {
        "batch_norm": {"recomputed_from_batches": int(recomputed),
                       "mode": getattr(model.model_config, "bn_mode", "none")},
        "sampler": {"chosen": chosen.kind, "components": chosen.num_components,
                    "fitted_on_examples": int(len(means)), **chosen.selection, "gmm_covariance_scale": scale},
        "training_posterior": {k: v for k, v in diagnostics.items() if k != "kl_per_dimension"},
    }


def add_flow_sampler(run_dir: str | Path, steps: int = 3000, seed: int | None = None,
                     progress: Callable[[int], None] | None = None, **flow_options) -> dict[str, Any]:
    """Fit the ``flow`` sampler for a finished run (one trained before flows, or with ``train.flow_steps`` 0):
    encode its training codes as ``finish_training`` does (no BatchNorm refresh: the run already has it),
    fit the flow on the run's ``gmm`` sampler (``flow_options`` go to ``fit_flow``), store ``samplers/flow.json``
    and choose ``sampler.json`` again among all the run's candidates by held-out code likelihood.
    Returns {"chosen", "candidates" (scores), "flow" (its selection record)}."""
    from keras_vae.data import make_datasets
    from keras_vae.runs.folder import load_run
    from keras_vae.sampling.posterior import SAMPLERS_DIR, load_sampler

    run_dir = Path(run_dir)
    config, model = load_run(run_dir)
    seed = config.train.seed if seed is None else int(seed)
    data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                         batch_size=config.train.batch_size, seed=config.train.seed)
    val_images, _ = data.validation_arrays()
    means, variances = encode_batches(model, _rebatched(_limited(data.train, FIT_EXAMPLES), ENCODE_BATCH))
    held_out = held_out_codes(model, val_images, seed=seed)
    candidates = {kind: load_sampler(run_dir, model.latent_dim, kind) for kind in ("prior", "gaussian", "gmm")
                  if kind == "prior" or (run_dir / SAMPLERS_DIR / f"{kind}.json").is_file()}
    flow_options.setdefault("base", candidates.get("gmm"))
    flow = fit_flow(means, variances, held_out, steps=steps, seed=seed, progress=progress, **flow_options)
    candidates["flow"] = flow
    chosen = choose_sampler(candidates, held_out)
    save_samplers(run_dir, chosen, {"flow": flow})
    return {"chosen": chosen.kind, "candidates": dict(chosen.selection["candidates"]), "flow": dict(flow.selection)}
