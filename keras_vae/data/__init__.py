"""Data sources (embedded MNIST, tensorflow-datasets, image folders, NumPy files and arrays) and the tf.data pipeline.

`make_datasets(config, image_shape=..., value_range=..., batch_size=..., seed=...)` is the front door:
it picks the source named by ``config.source`` and returns `Datasets` ready for ``model.fit``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from keras_vae.data.config import SOURCE_HELP, SOURCE_KINDS, DataConfig

if TYPE_CHECKING:
    from keras_vae.data.pipeline import Datasets, Source

# TensorFlow-backed names are imported on first use, so `import keras_vae.config` stays light.
_LAZY = {
    "Datasets": "keras_vae.data.pipeline",
    "Source": "keras_vae.data.pipeline",
    "load_npy": "keras_vae.data.npy_source",
    "array_source": "keras_vae.data.arrays",
    "make_datasets_from_arrays": "keras_vae.data.arrays",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_source(spec: str) -> tuple[str, str | None]:
    """Split a source string: 'embedded' -> ('embedded', None), 'tfds:mnist' -> ('tfds', 'mnist'), 'folder:P' -> ('folder', 'P'), 'npy:F' -> ('npy', 'F').

    Validation is DataConfig's (one rule for both): ConfigError naming the spec and the valid forms."""
    DataConfig(source=spec)
    kind, _, arg = spec.strip().partition(":")
    return kind, (None if kind == "embedded" else arg)


def load_source(config: DataConfig) -> Source:
    """The Source named by ``config.source`` (unbatched, in the source's own size and dtype)."""
    kind, arg = parse_source(config.source)
    if kind == "embedded":
        from keras_vae.data.embedded import embedded_source

        return embedded_source(config)
    if kind == "tfds":
        from keras_vae.data.tfds_source import tfds_source

        return tfds_source(arg, config)
    if kind == "npy":
        from keras_vae.data.npy_source import npy_source

        return npy_source(arg, config)
    from keras_vae.data.folder import folder_source

    return folder_source(arg, config)


def make_datasets(
    config: DataConfig,
    *,
    image_shape: tuple[int, int, int],
    value_range: tuple[float, float],
    batch_size: int,
    seed: int,
    labels: bool = False,
) -> Datasets:
    """Datasets of float32 [B, H, W, C] image batches in ``value_range`` from the source in ``config``; with
    ``labels`` (a class-conditional model), (images, int64 labels) batches, refused for a source without labels."""
    from keras_vae.data.pipeline import build, check_request

    check_request(image_shape, value_range, batch_size, config.binarize)  # before any data is read
    return build(
        load_source(config),
        image_shape=image_shape,
        value_range=value_range,
        batch_size=batch_size,
        seed=seed,
        binarize=config.binarize,
        flip=config.flip,
        cache=config.cache,
        shuffle_buffer=config.shuffle_buffer,
        labels=labels,
    )


__all__ = [
    "DataConfig",
    "Datasets",
    "Source",
    "array_source",
    "load_npy",
    "load_source",
    "make_datasets",
    "make_datasets_from_arrays",
    "parse_source",
]
