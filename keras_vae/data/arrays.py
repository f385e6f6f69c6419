"""NumPy arrays as a data source: validated (dtype, range, shape, NaN), split with the fixed split seed."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from keras_vae.data.config import DataConfig
from keras_vae.data.pipeline import NO_LABEL, Datasets, Source, build, check_request, split_indices
from keras_vae.errors import DataError

EXPECTED_VALUES = "expected uint8 in 0..255 or float in [0, 1]"


def check_images(images, image_shape=None) -> np.ndarray:
    """Return ``images`` as an array (N, H, W) or (N, H, W, C) of uint8, bool or float in [0, 1], else raise DataError."""
    try:
        images = np.asarray(images)
    except (TypeError, ValueError) as err:
        raise DataError(f"images cannot be read as an array ({err}): pass a NumPy array (N, H, W[, C])") from None
    target = f" (converted to the model's {tuple(image_shape)})" if image_shape is not None else ""
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4)):
        raise DataError(
            f"images have shape {images.shape}: expected (N, H, W) or (N, H, W, C) with C in 1, 3 or 4{target}"
        )
    if images.dtype == np.uint8 or images.dtype == np.bool_:
        return images
    if images.dtype.kind not in "fiu":
        raise DataError(f"images have dtype {images.dtype}: {EXPECTED_VALUES}")
    if images.size == 0:
        return images
    if images.dtype.kind == "f":
        bad = int(np.size(images) - np.count_nonzero(np.isfinite(images)))
        if bad:
            raise DataError(f"images contain {bad} NaN or Inf values: clean or drop those examples")
    lo, hi = float(images.min()), float(images.max())
    if images.dtype.kind == "f":
        if lo < 0.0 or hi > 1.0:
            hint = " (divide by 255)" if hi <= 255.0 and lo >= 0.0 else ""
            raise DataError(f"images are {images.dtype} with values in [{lo:g}, {hi:g}]: {EXPECTED_VALUES}{hint}")
        return images.astype(np.float32, copy=False)
    hint = " (convert with images.astype('uint8'))" if lo >= 0 and hi <= 255 else ""
    raise DataError(f"images are {images.dtype} with values in [{lo:g}, {hi:g}]: {EXPECTED_VALUES}{hint}")


def array_source(
    images,
    labels=None,
    *,
    validation_fraction: float = 0.1,
    max_examples: int | None = None,
    name: str = "NumPy arrays",
    image_shape=None,
    exclude_labels=(),
    names=None,
) -> Source:
    """A Source over in-memory images (and optional integer labels), split by the fixed split seed, capped per split.

    ``exclude_labels`` drops those classes from both splits after the split (so the remaining
    validation examples are the same as without it); ``names`` (one string per image) are kept.
    """
    images = check_images(images, image_shape)
    n = len(images)
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,) or labels.dtype.kind not in "iub":
            raise DataError(
                f"labels have shape {labels.shape} and dtype {labels.dtype}: expected {n} integers, one per image (or None)"
            )
        labels = labels.astype(np.int64)
    if names is not None:
        names = tuple(str(v) for v in names)
        if len(names) != n:
            raise DataError(f"{len(names)} names for {n} images: give one name per image (or none)")
    train_idx, val_idx = split_indices(n, validation_fraction, "images")
    if exclude_labels:
        if labels is None:
            raise DataError(f"exclude_labels {list(exclude_labels)} needs labels, but {name} has none: "
                            "drop data.exclude_labels or use a labelled source")
        excluded = np.asarray(list(exclude_labels), np.int64)
        train_idx = train_idx[~np.isin(labels[train_idx], excluded)]
        val_idx = val_idx[~np.isin(labels[val_idx], excluded)]
    if max_examples is not None:
        train_idx, val_idx = train_idx[:max_examples], val_idx[:max_examples]

    def dataset(idx: np.ndarray) -> tf.data.Dataset:
        y = labels[idx] if labels is not None else np.full(len(idx), NO_LABEL, np.int64)
        return tf.data.Dataset.from_tensor_slices((images[idx], y))

    return Source(
        train=dataset(train_idx),
        validation=dataset(val_idx),
        num_train=len(train_idx),
        num_validation=len(val_idx),
        has_labels=labels is not None,
        name=name,
        train_index=train_idx,
        validation_index=val_idx,
        names=names,
    )


def make_datasets_from_arrays(
    images,
    labels=None,
    *,
    model=None,
    image_shape: tuple[int, int, int] | None = None,
    value_range: tuple[float, float] | None = None,
    batch_size: int = 100,
    seed: int = 0,
    validation_fraction: float = 0.1,
    binarize: bool = False,
    flip: bool = False,
) -> Datasets:
    """Datasets from NumPy images (uint8 0..255 or float in [0, 1], (N, H, W[, C])) and optional integer labels.

    ``image_shape`` and ``value_range`` default to ``model``'s when a model is given, else to the
    array's own (H, W, C) (C = 1 for (N, H, W)) and (0, 1); ``batch_size`` 100, ``seed`` 0.
    """
    if image_shape is None:
        image_shape = getattr(model, "image_shape", None) or _array_image_shape(images)
    if value_range is None:
        value_range = getattr(model, "value_range", None) or (0.0, 1.0)
    DataConfig(validation_fraction=validation_fraction)  # the same validation as for a configured source
    check_request(image_shape, value_range, batch_size, binarize)
    source = array_source(images, labels, validation_fraction=validation_fraction, image_shape=image_shape)
    return build(source, image_shape=image_shape, value_range=value_range, batch_size=batch_size, seed=seed,
                 binarize=binarize, flip=flip)


def _array_image_shape(images) -> tuple[int, int, int]:
    """(H, W, C) of an image array (N, H, W) or (N, H, W, C); RGBA counts as RGB (the pipeline drops alpha)."""
    shape = np.shape(images)
    if len(shape) == 3:
        return (int(shape[1]), int(shape[2]), 1)
    if len(shape) == 4:
        return (int(shape[1]), int(shape[2]), 3 if shape[3] == 4 else int(shape[3]))
    raise DataError(f"images have shape {tuple(shape)}: expected (N, H, W) or (N, H, W, C) with C in 1, 3 or 4")
