"""The class samplers of a conditional export as one padded table: what sampler.onnx and the SavedModel
``sample`` signatures draw from when they take a ``label``.

For classes c = 0..C-1 with mixtures of K_c components, padded to K = max K_c:

    cum[c, j]  = cumsum(float32 weights of class c)_j for j < K_c, 2 beyond (u < 1 never reaches a pad)
    last[c]    = K_c - 1
    means, scale_tril of class c at rows c K .. c K + K_c - 1 of [C K, d] and [C K, d, d] (zeros beyond)

    k_i = min(#{j : cum[label_i, j] <= u_i}, last[label_i]),  z_i = means[label_i K + k_i] + L[label_i K + k_i] eps_i

which is, row by row, class label_i's own drawing rule (``LatentSampler.latents``), so one (seed, label)
gives the latents of that class's sampler in every runtime. A class the run has no sampler for draws from
the prior N(0, I).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping

import numpy as np

from keras_vae.errors import ArtifactError, DataError

PAD_CUMULATIVE = 2.0


@dataclasses.dataclass(frozen=True)
class ClassSamplers:
    """One ``LatentSampler`` per class 0..C-1, and where each came from (``sources[c]``)."""

    samplers: tuple
    sources: tuple

    @property
    def num_classes(self) -> int:
        return len(self.samplers)

    @property
    def latent_dim(self) -> int:
        return self.samplers[0].latent_dim

    @property
    def width(self) -> int:
        """K: the most components of one class."""
        return max(s.num_components for s in self.samplers)

    def tables(self) -> dict[str, np.ndarray]:
        """{"cumulative" [C, K] float32, "last" [C] int32, "means" [C K, d], "scale_tril" [C K, d, d] float32}."""
        from keras_vae.export.sampler_onnx import cumulative_weights

        c, k, d = self.num_classes, self.width, self.latent_dim
        cumulative = np.full((c, k), PAD_CUMULATIVE, np.float32)
        means = np.zeros((c * k, d), np.float32)
        tril = np.zeros((c * k, d, d), np.float32)
        for i, s in enumerate(self.samplers):
            m = s.num_components
            cumulative[i, :m] = cumulative_weights(s.weights)
            means[i * k:i * k + m] = np.asarray(s.means, np.float32)
            tril[i * k:i * k + m] = np.asarray(s.scale_tril, np.float32)
        last = np.asarray([s.num_components - 1 for s in self.samplers], np.int32)
        return {"cumulative": cumulative, "last": last, "means": means, "scale_tril": tril}

    def check_labels(self, labels, n: int) -> np.ndarray:
        """int32 [n] labels: one integer (repeated) or n, each in [0, C); DataError otherwise."""
        values = np.asarray(labels)
        if values.ndim == 0:
            values = np.full(n, values)
        if values.shape != (n,) or values.dtype == bool or not np.issubdtype(values.dtype, np.integer):
            raise DataError(f"label must be one integer in [0, {self.num_classes}) or {n} of them (one per sample), "
                            f"got {values.dtype} of shape {list(values.shape)}")
        if values.size and (values.min() < 0 or values.max() >= self.num_classes):
            raise DataError(f"label must be in [0, {self.num_classes}) (the export's classes), got "
                            f"{int(values.min()) if values.min() < 0 else int(values.max())}")
        return values.astype(np.int32)

    def _per_class(self, fn, eps, u, labels, dtype) -> np.ndarray:
        """[n, d]: row i is ``fn(class labels[i]'s sampler, eps rows, u rows)``, computed once per class."""
        eps, u = np.asarray(eps, np.float32), np.asarray(u, np.float32).reshape(-1)
        labels = self.check_labels(labels, len(u))
        out = np.zeros(eps.shape, dtype)
        for c in np.unique(labels):
            rows = labels == c
            out[rows] = fn(self.samplers[c], eps[rows], u[rows])
        return out

    def latents(self, eps, u, labels) -> np.ndarray:
        """z [n, d]: row i drawn by class labels[i]'s rule (the NumPy reference of the table)."""
        return self._per_class(lambda sampler, e, v: sampler.latents(e, v), eps, u, labels, np.float32)

    def sample(self, n: int, seed: int, label) -> np.ndarray:
        """n latents of class ``label`` (one integer or n) from ``draw_noise(seed, n, d)``."""
        from keras_vae.sampling.samplers import draw_noise

        return self.latents(*draw_noise(seed, n, self.latent_dim), label)

    def latent_tolerance(self, eps, u, labels) -> np.ndarray:
        """``keras_vae.export.sampler_onnx.latent_tolerance`` of each row's class sampler."""
        from keras_vae.export.sampler_onnx import latent_tolerance

        return self._per_class(latent_tolerance, eps, u, labels, np.float64)

    def describe(self) -> dict[str, str]:
        """{class: "gmm (run folder samplers/classes.json)" ...} for export.json."""
        return {str(c): f"{s.kind}, {s.num_components} component(s) ({src})"
                for c, (s, src) in enumerate(zip(self.samplers, self.sources))}

    def save(self, path: str | Path) -> Path:
        """The run's classes.json format (``keras_vae.sampling.classes``), every class included."""
        import json

        from keras_vae.sampling.classes import class_samplers_to_dict
        from keras_vae.utils.files import atomic_path

        path = Path(path)
        text = json.dumps(class_samplers_to_dict(dict(enumerate(self.samplers))), indent=1) + "\n"
        with atomic_path(path) as tmp:
            tmp.write_text(text)
        return path


def export_class_samplers(run_dir, num_classes: int, latent_dim: int, kind: str | None = None) -> ClassSamplers:
    """The samplers a conditional export draws each class from: the run's ``samplers/classes.json`` (as
    ``keras-vae sample RUN --class K`` does), N(0, I) for a class it lacks, for every class when it is
    missing, and with ``kind='prior'``."""
    from keras_vae.sampling.classes import CLASSES_FILE, has_class_samplers, load_class_samplers
    from keras_vae.sampling.samplers import prior_sampler

    prior = prior_sampler(latent_dim)
    if kind == "prior" or not has_class_samplers(run_dir):
        why = "--sampler prior" if kind == "prior" else f"the run folder has no {CLASSES_FILE}"
        return ClassSamplers((prior,) * num_classes, (f"prior N(0, I): {why}",) * num_classes)
    stored: Mapping[int, object] = load_class_samplers(run_dir, latent_dim)
    outside = sorted(c for c in stored if not 0 <= c < num_classes)
    if outside:
        raise ArtifactError(f"{CLASSES_FILE} of {str(run_dir)!r} has samplers for classes {outside}, outside the "
                            f"model's [0, {num_classes}): it belongs to another run; fit the class samplers again")
    flows = sorted(c for c, s in stored.items() if s.kind == "flow")
    if flows:
        raise ArtifactError(f"{CLASSES_FILE} holds flow samplers (classes {flows}); class samplers are Gaussian "
                            "mixtures: fit them again with keras_vae.training.class_samplers.fit_class_samplers")
    samplers = tuple(stored.get(c, prior) for c in range(num_classes))
    sources = tuple(f"run folder {CLASSES_FILE}" if c in stored else f"prior N(0, I): {CLASSES_FILE} lacks the class"
                    for c in range(num_classes))
    return ClassSamplers(samplers, sources)
