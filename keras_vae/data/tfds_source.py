"""tensorflow-datasets as a source: 'train' for training, 'validation' (else 'test') for validation; never downloads."""
from __future__ import annotations

import logging

import tensorflow as tf

from keras_vae.data.config import DataConfig
from keras_vae.data.pipeline import NO_LABEL, Source
from keras_vae.errors import DataError

logger = logging.getLogger(__name__)

LIST_NAMES = "python -c \"import tensorflow_datasets as tfds; print(tfds.list_builders())\""


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError("tfds sources need tensorflow-datasets: pip install tensorflow-datasets") from None
    return tfds


def available_splits(builder) -> list[str] | None:
    """Split names of a prepared dataset, or None when its data is not prepared under the builder's data_dir."""
    if not builder.is_prepared():
        return None
    return list(builder.info.splits.keys())


def _root(builder, data_dir: str | None) -> str:
    if data_dir:
        return str(data_dir)
    try:
        return str(builder.data_dir_root)
    except AttributeError:  # older tensorflow-datasets
        return str(builder.data_dir)


def _image_key(features, name: str) -> str:
    tfds = _import_tfds()
    keys = list(features.keys())
    images = [k for k in keys if isinstance(features[k], tfds.features.Image)]
    if "image" in images:
        return "image"
    if images:
        return images[0]
    raise DataError(f"tensorflow-datasets {name!r} has no image feature (features: {', '.join(keys)}): choose an image dataset")


def _label_key(features) -> str | None:
    tfds = _import_tfds()
    if "label" in features.keys() and isinstance(features["label"], tfds.features.ClassLabel):
        return "label"
    return None


def _load(builder, split: str, image_key: str, label_key: str | None, max_examples: int | None) -> tuple[tf.data.Dataset, int]:
    ds = builder.as_dataset(split=split, shuffle_files=False)
    if max_examples is not None:
        ds = ds.take(max_examples)
    count = int(ds.cardinality())
    if count < 0:  # unknown: fall back on the split's metadata
        count = int(builder.info.splits[split].num_examples)
        if max_examples is not None:
            count = min(count, max_examples)
    if label_key is None:
        ds = ds.map(lambda ex: (ex[image_key], tf.constant(NO_LABEL, tf.int64)))
    else:
        ds = ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int64)))
    return ds, count


def _exclude(ds: tf.data.Dataset, labels) -> tuple[tf.data.Dataset, int]:
    """Drop examples whose label is in ``labels``; returns the filtered dataset and its size (counted once)."""
    excluded = tf.constant(list(labels), tf.int64)
    ds = ds.filter(lambda x, y: tf.logical_not(tf.reduce_any(tf.equal(y, excluded))))
    count = int(ds.map(lambda x, y: y).reduce(tf.constant(0, tf.int64), lambda n, _: n + 1))
    return ds, count


def tfds_source(name: str, config: DataConfig) -> Source:
    """Source over a prepared tensorflow-datasets dataset; DataError (never a download) when it is not prepared."""
    tfds = _import_tfds()
    try:
        builder = tfds.builder(name, data_dir=config.data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"unknown tensorflow-datasets name {name!r}: list the valid names with `{LIST_NAMES}`") from None
    splits = available_splits(builder)
    if splits is None:
        root = _root(builder, config.data_dir)
        raise DataError(
            f"tensorflow-datasets {name!r} is not prepared under {root}: run "
            f"`python -c \"import tensorflow_datasets as tfds; tfds.builder('{name}', data_dir='{root}').download_and_prepare()\"` "
            "on a machine with network (or pass --data-dir)"
        )
    if "train" not in splits:
        raise DataError(f"tensorflow-datasets {name!r} has no 'train' split (splits: {', '.join(splits)}): choose another dataset")
    if "validation" in splits:
        val_split = "validation"
    elif "test" in splits:
        val_split = "test"
    else:
        raise DataError(
            f"tensorflow-datasets {name!r} has no 'validation' or 'test' split (splits: {', '.join(splits)}): choose another dataset"
        )
    features = builder.info.features
    image_key, label_key = _image_key(features, name), _label_key(features)
    train, num_train = _load(builder, "train", image_key, label_key, config.max_examples)
    validation, num_val = _load(builder, val_split, image_key, label_key, config.max_examples)
    if config.exclude_labels:
        if label_key is None:
            raise DataError(f"exclude_labels {list(config.exclude_labels)} needs labels, but tensorflow-datasets "
                            f"{name!r} has no 'label' feature: drop data.exclude_labels")
        train, num_train = _exclude(train, config.exclude_labels)
        validation, num_val = _exclude(validation, config.exclude_labels)
    logger.info("tfds %s: train %d, %s %d examples (image key %r)", name, num_train, val_split, num_val, image_key)
    return Source(
        train=train,
        validation=validation,
        num_train=num_train,
        num_validation=num_val,
        has_labels=label_key is not None,
        name=f"tensorflow-datasets {name!r} (train / {val_split})",
    )
