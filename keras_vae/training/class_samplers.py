"""Fit a finished run's class samplers (``keras_vae.sampling.classes``): encode its labelled training images
(posterior means and variances, inference mode, as the run's own samplers were fitted) and the held-out codes
z = mu + sigma eps of its validation images, then fit one sampler per class and store
``RUN_DIR/samplers/classes.json``. A class-conditional model encodes q(z|x, y) with each image's label.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from keras_vae.errors import DataError
from keras_vae.sampling.classes import CLASS_COMPONENTS, fit_class_samplers_from_codes, save_class_samplers
from keras_vae.sampling.samplers import LatentSampler
from keras_vae.training.after_fit import ENCODE_BATCH, FIT_EXAMPLES


def _encode(model, pairs: Iterable, max_examples: int | None = None):
    """(means, variances, labels) of (images, labels) batches, inference mode."""
    conditional = getattr(model, "conditional", False)
    means, variances, labels, seen = [], [], [], 0
    for images, y in pairs:
        images, y = np.asarray(images), np.asarray(y, np.int64)
        if max_examples is not None:
            images, y = images[: max_examples - seen], y[: max_examples - seen]
        if len(images) == 0:
            break
        for i in range(0, len(images), ENCODE_BATCH):
            batch, batch_y = images[i:i + ENCODE_BATCH], y[i:i + ENCODE_BATCH]
            mean, log_var = model.encode(batch, labels=batch_y) if conditional else model.encode(batch)
            means.append(np.asarray(mean, np.float64))
            variances.append(np.exp(np.asarray(log_var, np.float64)))
            labels.append(batch_y)
        seen += len(images)
        if max_examples is not None and seen >= max_examples:
            break
    if not means:
        raise DataError("no labelled images to fit the class samplers on")
    return np.concatenate(means), np.concatenate(variances), np.concatenate(labels)


def labelled_datasets(config):
    """The run's datasets with labels ((images, labels) batches); DataError naming the fix for a source
    without labels."""
    from keras_vae.data import load_source
    from keras_vae.data.pipeline import build, check_request

    model = config.model
    check_request(model.image_shape, model.value_range, config.train.batch_size, config.data.binarize)
    source = load_source(config.data)
    if not source.has_labels:
        raise DataError(f"sampling by class needs labelled training images, and the run's data ({source.name}) has "
                        "no labels: drop --class, or train on a labelled source (--data embedded, a labelled "
                        "tfds:NAME, or npy:FILE.npz holding 'labels')")
    return build(source, image_shape=model.image_shape, value_range=model.value_range,
                 batch_size=config.train.batch_size, seed=config.train.seed, binarize=config.data.binarize,
                 flip=config.data.flip, cache=config.data.cache, shuffle_buffer=config.data.shuffle_buffer,
                 labels=True)


def class_codes(config, model, seed: int | None = None):
    """(means, variances, labels) of the run's labelled training images (the first FIT_EXAMPLES of one pass)
    and (held-out codes, labels) of its validation images (z = mu + sigma eps, eps from NumPy with ``seed``)."""
    seed = config.train.seed if seed is None else int(seed)
    data = labelled_datasets(config)
    means, variances, labels = _encode(model, data.train, FIT_EXAMPLES)
    val_images, val_labels = data.validation_arrays()
    val_pairs = ((val_images[i:i + ENCODE_BATCH], val_labels[i:i + ENCODE_BATCH])
                 for i in range(0, len(val_images), ENCODE_BATCH))
    val_mean, val_var, val_labels = _encode(model, val_pairs)
    eps = np.random.default_rng(seed).standard_normal(val_mean.shape)
    return (means, variances, labels), (val_mean + np.sqrt(val_var) * eps, val_labels)


def fit_class_samplers(run_dir: str | Path, seed: int | None = None, components: Sequence[int] = CLASS_COMPONENTS,
                       progress: Callable[[int], None] | None = None) -> dict[int, LatentSampler]:
    """Fit and store ``RUN_DIR/samplers/classes.json`` (one sampler per class of the run's labelled data);
    returns {class: LatentSampler}. DataError for a run whose data has no labels."""
    from keras_vae.runs.folder import load_run

    config, model = load_run(run_dir)
    seed = config.train.seed if seed is None else int(seed)
    (means, variances, labels), (held_out, held_out_labels) = class_codes(config, model, seed)
    samplers = fit_class_samplers_from_codes(means, variances, labels, held_out, held_out_labels, seed=seed,
                                             components=components, progress=progress)
    save_class_samplers(run_dir, samplers)
    return samplers
