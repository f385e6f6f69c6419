"""After the epochs: refresh BatchNorm statistics, fit the latent samplers on the aggregate posterior
of the training set (``keras_vae.sampling.posterior``) and record the posterior's health.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from keras_vae.evaluation.metrics import posterior_diagnostics
from keras_vae.sampling.flow_fit import fit_flow, flow_fit_steps
from keras_vae.sampling.posterior import encode_batches, held_out_codes, save_samplers
from keras_vae.sampling.samplers import choose_sampler, fit_samplers, gmm_search_steps

RECOMPUTE_EXAMPLES = 2048  # training images whose batch statistics refresh BatchNorm (training batch size)
FIT_EXAMPLES = 20000  # training images whose posteriors the samplers are fitted on
ENCODE_BATCH = 512  # images per encoder call when encoding the training set


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


def finish_training_steps(flow_steps: int = 0) -> int:
    """Units of work ``finish_training`` reports to its ``progress``: the steps before the mixture search,
    the search's (size, shrinkage) grid, the flow's evaluations (``flow_steps`` > 0) and saving."""
    return FINISH_STEPS_BEFORE_SEARCH + gmm_search_steps() + flow_fit_steps(flow_steps) + 1


def finish_training(model, train_dataset: Iterable, validation_images: np.ndarray, out_dir: str | Path,
                    seed: int = 0, progress: Callable[[int], None] | None = None,
                    flow_steps: int = 0) -> dict[str, Any]:
    """BatchNorm refresh + sampler fit (``keras_vae.sampling.posterior``); sets ``model.latent_sampler`` and writes
    the samplers into ``out_dir``. With ``flow_steps`` > 0 (``train.flow_steps``) a RealNVP flow
    (``keras_vae.sampling.flow_fit``) joins the candidates. Returns what metrics.json records about it.
    ``progress(n)`` is called as the ``finish_training_steps(flow_steps)`` units are done."""
    step = progress or (lambda n=1: None)
    recomputed = model.recompute_batch_norm(_limited(train_dataset, RECOMPUTE_EXAMPLES), seed=seed)
    step(1)
    means, variances = encode_batches(model, _rebatched(_limited(train_dataset, FIT_EXAMPLES), ENCODE_BATCH))
    held_out = held_out_codes(model, validation_images, seed=seed)
    step(1)
    candidates = fit_samplers(means, variances, held_out, seed=seed, progress=progress)
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
                    "fitted_on_examples": int(len(means)), **chosen.selection},
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
