"""Semi-supervised data: which N training images keep their labels, and the mixed labelled/unlabelled batches.

The N labelled images are drawn seeded and stratified: N / K of each of the K classes, without replacement,
from the source's training split (``stratified_labelled_indices``); the other training images are used without
their labels. ``semi_supervised_datasets`` runs both parts through the shared pipeline (binarization, scaling)
and zips them: each batch is {"unlabelled": x_u [B], "images": x_l [B_l], "labels": y_l [B_l]}, the unlabelled
images passing once per epoch and the labelled ones repeating (reshuffled), so every batch carries some.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import tensorflow as tf

from keras_vae.data.config import check_stratifiable
from keras_vae.data.pipeline import Datasets, Source, build
from keras_vae.errors import DataError


def stratified_labelled_indices(labels: np.ndarray, n: int, num_classes: int, seed: int) -> np.ndarray:
    """Sorted indices of ``n`` examples, n / num_classes of each class in [0, num_classes), drawn without
    replacement by ``numpy.random.default_rng(seed)``; ConfigError / DataError naming the fix otherwise."""
    labels = np.asarray(labels).reshape(-1)
    check_stratifiable(n, num_classes)
    if n >= len(labels):
        raise DataError(f"--labelled {n}: the training split has {len(labels)} images, and semi-supervised training "
                        f"needs some without labels: choose N < {len(labels)} (or train with --conditional on "
                        "every label)")
    if len(labels) and labels.min() < 0:
        raise DataError("--labelled needs a labelled source, and this one has no labels: use --data embedded, a "
                        "labelled tfds:NAME or npy:FILE.npz holding 'labels'")
    per_class = n // num_classes
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(num_classes):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise DataError(f"--labelled {n} takes {per_class} images of each class, and class {c} has "
                            f"{len(members)} training images: choose N <= {num_classes * len(members)}")
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


@dataclass(frozen=True)
class SemiSupervisedData:
    """The mixed training batches, the labelled indices (into the source's training split) and the counts."""

    train: tf.data.Dataset
    labelled_indices: np.ndarray
    num_labelled: int
    num_unlabelled: int
    labelled_batch_size: int

    def record(self, seed: int) -> dict:
        """What metrics.json keeps: counts, seed and the labelled indices."""
        return {"labelled": self.num_labelled, "unlabelled": self.num_unlabelled, "seed": int(seed),
                "labelled_batch_size": self.labelled_batch_size, "indices": self.labelled_indices.tolist()}


def training_labels(source: Source) -> np.ndarray:
    """The labels of the source's training split, in its order (-1 where it has none)."""
    batches = source.train.map(lambda x, y: y).batch(4096).as_numpy_iterator()
    return np.concatenate([np.asarray(b, np.int64).reshape(-1) for b in batches] or [np.zeros(0, np.int64)])


def semi_supervised_datasets(source: Source, n: int, num_classes: int, *, image_shape, value_range,
                             batch_size: int, seed: int, binarize: bool = False, flip: bool = False,
                             cache: bool = True, shuffle_buffer: int = 10_000) -> SemiSupervisedData:
    """Mixed batches of ``n`` stratified labelled and the remaining unlabelled training images of ``source``
    (pipeline as in ``keras_vae.data.pipeline.build``); labelled batch size min(batch_size, n)."""
    if not source.has_labels:
        raise DataError(f"--labelled needs a labelled source, and {source.name} has no labels: use --data embedded, "
                        "a labelled tfds:NAME or npy:FILE.npz holding 'labels'")
    labels = training_labels(source)
    chosen = stratified_labelled_indices(labels, n, num_classes, seed)
    mask = np.zeros(len(labels), bool)
    mask[chosen] = True
    flags = tf.constant(mask)

    def part(keep: bool) -> Source:
        ds = source.train.enumerate().filter(lambda i, xy: tf.equal(tf.gather(flags, i), keep))
        count = int(mask.sum()) if keep else int((~mask).sum())
        return replace(source, train=ds.map(lambda i, xy: xy), num_train=count, train_index=None)

    labelled_batch = min(batch_size, n)
    options = dict(image_shape=image_shape, value_range=value_range, binarize=binarize, flip=flip, cache=cache,
                   shuffle_buffer=shuffle_buffer, labels=True)
    unlabelled: Datasets = build(part(False), batch_size=batch_size, seed=seed, **options)
    labelled: Datasets = build(part(True), batch_size=labelled_batch, seed=seed + 1, **options)
    train = tf.data.Dataset.zip(unlabelled.train.map(lambda x, y: x), labelled.train.repeat())
    train = train.map(lambda u, xy: {"unlabelled": u, "images": xy[0], "labels": xy[1]})
    # the filter hides the epoch's length from Keras: state it (one pass over the unlabelled images)
    steps = math.ceil(int((~mask).sum()) / batch_size)
    train = train.apply(tf.data.experimental.assert_cardinality(steps)).prefetch(tf.data.AUTOTUNE)
    return SemiSupervisedData(train=train, labelled_indices=chosen, num_labelled=int(mask.sum()),
                              num_unlabelled=int((~mask).sum()), labelled_batch_size=labelled_batch)
