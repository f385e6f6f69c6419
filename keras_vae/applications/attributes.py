"""Attribute vectors from labels as a file: per-class mean codes (``attributes.json``) and the latent edit.

    mean_c            = (1 / |c|) sum_{i: y_i = c} mu(x_i)        posterior means E[z|x], inference mode
    vector(a, b)      = mean_a - mean_b                            "class a minus class b"
    edit(z; a, b, s)  = z + s (mean_a - mean_b)                    adding moves a code from b towards a

The edit is defined on the stored float32 means, evaluated in float64 and rounded once to float32;
the JavaScript twin (``serving/node/attributes.js``, used by the Node CLI and the browser explorer)
evaluates the same expression in doubles on the same JSON numbers, so every runtime gets the same
latents bit for bit. "Go to class mean a" is ``mean_a`` itself.

attributes.json (written by ``keras-vae export`` beside decoder.onnx when the run's data has labels)::

    {"format": "keras-vae-attributes", "format_version": 1, "latent_dim": D,
     "code": "...", "edit": "...", "fitted_on": {"source": ..., "split": "train", "examples": N, ...},
     "classes": [{"label": 0, "count": n_0, "mean": [D floats]}, ...]}   (labels ascending)

NumPy only, except ``fit_attributes`` (reads a data source, imports TensorFlow).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keras_vae.errors import ArtifactError, ConfigError

FORMAT = "keras-vae-attributes"
FORMAT_VERSION = 1
CODE = "posterior mean E[z|x] (inference mode), averaged per label"
EDIT = "z + alpha * (mean[a] - mean[b]), float64 arithmetic on the stored float32 numbers, rounded to float32"
FIT_EXAMPLES = 20000  # training examples encoded at most (the embedded MNIST split has 4,500)


def edit_latents(z, mean_a, mean_b, alpha: float) -> np.ndarray:
    """z + alpha (mean_a - mean_b) in float64, rounded to float32: [D] or [N, D] like ``z``."""
    if not math.isfinite(float(alpha)):
        raise ConfigError(f"attribute strength must be a finite number, got {alpha!r}")
    z64 = np.asarray(z, np.float32).astype(np.float64)
    a64, b64 = (np.asarray(m, np.float32).astype(np.float64) for m in (mean_a, mean_b))
    return (z64 + float(alpha) * (a64 - b64)).astype(np.float32)


@dataclass(frozen=True)
class AttributeTable:
    """Per-class mean codes: ``labels`` [K] (ascending ints), ``counts`` [K], ``means`` [K, D] float32."""

    labels: tuple[int, ...]
    counts: tuple[int, ...]
    means: np.ndarray
    fitted_on: dict[str, Any] = field(default_factory=dict)

    @property
    def latent_dim(self) -> int:
        return int(self.means.shape[1])

    def mean(self, label: int) -> np.ndarray:
        """The mean code [D] of class ``label`` (float32)."""
        return self.means[self._row(label)]

    def vector(self, a: int, b: int) -> np.ndarray:
        """mean_a - mean_b [D], float64 (the direction ``edit`` adds)."""
        return self.mean(a).astype(np.float64) - self.mean(b).astype(np.float64)

    def edit(self, z, a: int, b: int, alpha: float) -> np.ndarray:
        """z + alpha (mean_a - mean_b) (module docstring): [D] or [N, D] float32."""
        z = np.asarray(z, np.float32)
        if z.shape[-1:] != (self.latent_dim,) or z.ndim not in (1, 2):
            raise ConfigError(f"codes must be [D] or [N, D] with D = {self.latent_dim}, got shape {z.shape}")
        return edit_latents(z, self.mean(a), self.mean(b), alpha)

    def _row(self, label) -> int:
        try:
            return self.labels.index(int(label))
        except (ValueError, TypeError):
            raise ConfigError(f"no class {label!r} in the attribute table (classes: "
                              f"{', '.join(map(str, self.labels))})") from None

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "latent_dim": self.latent_dim,
                "code": CODE, "edit": EDIT, "fitted_on": dict(self.fitted_on),
                "classes": [{"label": int(label), "count": int(count), "mean": [float(v) for v in mean]}
                            for label, count, mean in zip(self.labels, self.counts, self.means)]}

    def save(self, path: str | Path) -> Path:
        """Write the table as JSON, atomically (float32 values written exactly); returns the path."""
        from keras_vae.utils.files import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.to_dict(), allow_nan=False) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: Any, source: str = "attribute table") -> "AttributeTable":
        """Check and build; ArtifactError naming ``source`` and the problem otherwise."""
        def bad(problem: str) -> ArtifactError:
            return ArtifactError(f"{source} is not a keras-vae attribute table: {problem}; re-export the run")

        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise bad(f"'format' must be {FORMAT!r}")
        if data.get("format_version") != FORMAT_VERSION:
            raise bad(f"format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
        classes = data.get("classes")
        if not isinstance(classes, list) or len(classes) < 2:
            raise bad("'classes' must list at least two classes")
        latent_dim = data.get("latent_dim")
        try:
            labels = tuple(int(c["label"]) for c in classes)
            counts = tuple(int(c["count"]) for c in classes)
            rows = [np.asarray(c["mean"], np.float64) for c in classes]
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"every class needs 'label', 'count' and 'mean' ({type(exc).__name__}: {exc})") from None
        for label, row in zip(labels, rows):
            if row.shape != (latent_dim,) or not np.all(np.isfinite(row)):
                raise bad(f"means must be finite vectors of latent_dim={latent_dim!r} numbers; class {label} has "
                          f"shape {row.shape}")
        means = np.stack(rows)
        if list(labels) != sorted(set(labels)) or min(counts) < 1:
            raise bad("labels must be distinct and ascending, counts >= 1")
        return cls(labels, counts, means.astype(np.float32), dict(data.get("fitted_on") or {}))

    @classmethod
    def load(cls, path: str | Path, latent_dim: int | None = None) -> "AttributeTable":
        """Read an attributes.json; with ``latent_dim``, also check that it belongs to that model."""
        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"attribute file {str(path)!r} does not exist (exports of runs without labels have none)")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"attribute file {str(path)!r} is not valid JSON ({exc}): re-export the run") from None
        table = cls.from_dict(data, source=f"attribute file {str(path)!r}")
        if latent_dim is not None and table.latent_dim != int(latent_dim):
            raise ArtifactError(f"attribute file {str(path)!r} has latent dimension {table.latent_dim} but the model "
                                f"has {latent_dim}: it belongs to another model")
        return table


def class_means(codes, labels, fitted_on: dict[str, Any] | None = None) -> AttributeTable:
    """The AttributeTable of posterior means ``codes`` [N, D] with integer ``labels`` [N] (means in float64,
    stored as float32); needs at least two classes."""
    codes, labels = np.asarray(codes, np.float64), np.asarray(labels)
    if codes.ndim != 2 or labels.shape != (len(codes),):
        raise ConfigError(f"class_means needs codes [N, D] and one label each, got {codes.shape} and {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise ConfigError(f"class labels must be integers, got dtype {labels.dtype}")
    present = sorted(int(v) for v in np.unique(labels))
    if len(present) < 2:
        raise ConfigError(f"attribute vectors need at least two classes, the labels hold {present}")
    means = np.stack([codes[labels == c].mean(axis=0) for c in present])
    counts = tuple(int(np.sum(labels == c)) for c in present)
    return AttributeTable(tuple(present), counts, means.astype(np.float32), dict(fitted_on or {}))


def fit_attributes(model, data_config, max_examples: int = FIT_EXAMPLES) -> AttributeTable | str:
    """The AttributeTable of the training split of ``data_config``'s source (encoded as in training:
    binarized when the run binarized), or a one-phrase reason why there is none (no labels, one class,
    the source cannot be read here)."""
    from keras_vae.applications.encoding import encode_examples
    from keras_vae.data import load_source
    from keras_vae.data.examples import iterate_examples
    from keras_vae.errors import KerasVAEError

    try:
        source = load_source(data_config)
    except (KerasVAEError, OSError) as exc:
        return f"the run's data source {data_config.source!r} cannot be read here ({exc})"
    if not source.has_labels:
        return f"the run's data source ({source.name}) has no labels"
    batches = iterate_examples(source, image_shape=model.image_shape, value_range=model.value_range, split="train",
                               batch_size=256, binarize=bool(getattr(data_config, "binarize", False)),
                               max_examples=max_examples)
    codes = encode_examples(model, batches)
    fitted_on = {"source": source.name, "split": "train", "examples": int(len(codes.index)),
                 "binarized": bool(getattr(data_config, "binarize", False))}
    try:
        return class_means(codes.mean, codes.labels, fitted_on)
    except ConfigError as exc:
        return str(exc)
