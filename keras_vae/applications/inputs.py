"""What an application reads: a trained run folder and a data source converted to that model's images.

``open_run_and_source`` loads the run and points its data configuration at another source when one
is named (``keras_vae.data.examples.with_source``: a new source reads all its examples, the run's
``exclude_labels`` are dropped); ``source_batches`` walks that source once, in a fixed order, as
``ExampleBatch`` objects in the model's size, channels and value range.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    from keras_vae.data.examples import ExampleBatch


def open_run_and_source(run_dir: str | Path, data: str | None = None,
                        data_dir: str | None = None) -> tuple[Any, Any, Any, Any]:
    """(RunConfig, model, Source, DataConfig) of the run folder and of the data to apply it to: ``data``
    (a source spec such as ``npy:FILE``; None: the run's own source) read from ``data_dir``."""
    from keras_vae.data import load_source
    from keras_vae.data.examples import with_source
    from keras_vae.runs.folder import load_run

    config, model = load_run(run_dir)
    data_config = with_source(config.data, data, data_dir)
    return config, model, load_source(data_config), data_config


def source_batches(config, source, *, split: str = "all", batch_size: int = 256, max_examples: int | None = None,
                   binarize: bool = False) -> Iterator[ExampleBatch]:
    """``iterate_examples`` of ``source`` in the run's image shape and value range (lazy: nothing is read
    before the first batch is asked for)."""
    from keras_vae.data.examples import iterate_examples

    return iterate_examples(source, image_shape=config.model.image_shape, value_range=config.model.value_range,
                            split=split, batch_size=batch_size, binarize=binarize, max_examples=max_examples)


def source_examples(config, source, *, split: str = "all", batch_size: int = 256, max_examples: int | None = None,
                    binarize: bool = False) -> ExampleBatch:
    """All of ``source_batches`` in one ExampleBatch (empty arrays when the selection has no images)."""
    from keras_vae.data.examples import load_examples

    return load_examples(source, image_shape=config.model.image_shape, value_range=config.model.value_range,
                         split=split, batch_size=batch_size, binarize=binarize, max_examples=max_examples)
