"""Every example of a source, in batches, with its position, label and name: what the applications read.

Unlike ``make_datasets`` (shuffled training batches for ``fit``), ``iterate_examples`` walks a
source once, in a fixed order, and keeps track of where each image came from:

    split="all"         the training then the validation examples (both splits of the source)
    split="train"       the training split, in split order
    split="validation"  the validation split (the images ``fit`` validates on)

Each `ExampleBatch` holds float32 images in the model's value range, the source positions
(``index``: row of the array / position in the sorted file list, or a running count for sources
that do not know it), integer labels (or None) and names (file paths, or None). With
``binarize=True`` each image is binarized once with a seed fixed by its position (the way the
validation split is binarized for training), so scores do not change between calls.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import tensorflow as tf

from keras_vae.data.config import DataConfig
from keras_vae.data.pipeline import (VALIDATION_BINARIZE_SEED, Source, _bernoulli, _prepare_fn, _scale,
                                     _to_unit_float, check_element_spec, check_request)
from keras_vae.choices import DATA_SPLITS as SPLITS
from keras_vae.errors import ConfigError


@dataclass(frozen=True)
class ExampleBatch:
    """One batch: images [B, H, W, C] (model range), index [B] int64, labels [B] or None, names or None."""

    images: np.ndarray
    index: np.ndarray
    labels: np.ndarray | None
    names: list[str] | None


def _parts(source: Source, split: str) -> list[tuple[tf.data.Dataset, np.ndarray]]:
    parts = []
    for name in ("train", "validation"):
        if split not in ("all", name):
            continue
        ds = getattr(source, name)
        index = getattr(source, f"{name}_index")
        count = getattr(source, f"num_{name}")
        if index is None:  # the source does not know positions: number examples as read
            start = 0 if name == "train" else source.num_train
            index = np.arange(start, start + count, dtype=np.int64)
        parts.append((ds, np.asarray(index, np.int64)))
    return parts


def count_examples(source: Source, split: str) -> int:
    """How many examples ``iterate_examples`` yields for ``split``."""
    check_split(split)
    return sum(len(index) for _, index in _parts(source, split))


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: choose 'all', 'train' or 'validation'")


def iterate_examples(
    source: Source,
    *,
    image_shape,
    value_range,
    split: str = "all",
    batch_size: int = 256,
    binarize: bool = False,
    max_examples: int | None = None,
) -> Iterator[ExampleBatch]:
    """Batches of every example of ``split`` (see the module docstring), in a fixed order."""
    check_split(split)
    image_shape, value_range = check_request(image_shape, value_range, batch_size, binarize)
    if max_examples is not None and max_examples < 1:
        raise ConfigError(f"max_examples must be >= 1, got {max_examples!r}")
    prepare = _prepare_fn(image_shape, store_uint8=False)
    remaining = max_examples
    for ds, index in _parts(source, split):
        check_element_spec(ds.element_spec[0], image_shape, source.name)
        if remaining is not None:
            ds, index = ds.take(remaining), index[:remaining]
            remaining -= len(index)
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(index)))

        def convert(xy, i):
            x, y = prepare(*xy)
            if binarize:
                x = _bernoulli(_to_unit_float(x), tf.stack([tf.constant(VALIDATION_BINARIZE_SEED, tf.int64), i]))
            return _scale(x, value_range), y, i

        ds = ds.map(convert, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        for x, y, i in ds.batch(batch_size).prefetch(tf.data.AUTOTUNE):
            i = i.numpy()
            names = [source.names[k] for k in i] if source.names is not None else None
            yield ExampleBatch(images=x.numpy(), index=i, labels=y.numpy() if source.has_labels else None, names=names)
        if remaining is not None and remaining <= 0:
            return


def load_examples(source: Source, **kwargs) -> ExampleBatch:
    """All of ``iterate_examples(source, **kwargs)`` in one ExampleBatch (mind the memory for large sources)."""
    batches = list(iterate_examples(source, **kwargs))
    shape = tuple(int(s) for s in kwargs["image_shape"])
    if not batches:
        return ExampleBatch(np.zeros((0, *shape), np.float32), np.zeros((0,), np.int64),
                            np.zeros((0,), np.int64) if source.has_labels else None,
                            [] if source.names is not None else None)
    return ExampleBatch(
        images=np.concatenate([b.images for b in batches]),
        index=np.concatenate([b.index for b in batches]),
        labels=np.concatenate([b.labels for b in batches]) if source.has_labels else None,
        names=sum((b.names for b in batches), []) if source.names is not None else None,
    )


def with_source(config: DataConfig, spec: str | None = None, data_dir: str | None = None,
                max_examples: int | None = None, keep_exclusions: bool = False) -> DataConfig:
    """The run's DataConfig pointed at another source (``spec``), as the applications read it.

    A new source reads all its examples (the run's ``max_examples`` cap applies only to the run's
    own source) unless ``max_examples`` is given; ``exclude_labels`` is dropped unless
    ``keep_exclusions`` (scoring held-out classes is the point of anomaly detection).
    """
    changes: dict = {}
    if spec is not None and spec != config.source:
        changes.update(source=spec, max_examples=None)
    if data_dir is not None:
        changes["data_dir"] = data_dir
    if max_examples is not None:
        changes["max_examples"] = max_examples
    if not keep_exclusions:
        changes["exclude_labels"] = ()
    return dataclasses.replace(config, **changes)
