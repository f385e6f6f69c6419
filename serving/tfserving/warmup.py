"""TF Serving warmup requests: ``<version>/assets.extra/tf_serving_warmup_requests``.

TF Serving replays these ``PredictionLog`` records when it loads a version, before it marks the
version AVAILABLE, so the first real request does not pay for graph tracing and memory setup.
The records are ``PredictionLog(predict_log=PredictLog(request=PredictRequest(...)))`` in a TFRecord
file: one per signature and batch size. Needs TensorFlow and tensorflow-serving-api (imported here).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from export import contract
from keras_vae.errors import ArtifactError, ConfigError

__all__ = ["write_warmup_requests", "read_warmup_requests", "WARMUP_FILE", "WARMUP_DIR"]

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"

_LATENT_SIGNATURES = ("serving_default", "decode_uint8")
_IMAGE_SIGNATURES = ("encode", "reconstruct")


def _warmup_inputs(signature, batch, latent_dim, image_shape, rng) -> dict:
    if signature in _LATENT_SIGNATURES:
        return {contract.LATENT_INPUT: rng.standard_normal((batch, latent_dim)).astype(np.float32)}
    if signature in _IMAGE_SIGNATURES:
        return {contract.IMAGE_INPUT: rng.random((batch, *image_shape)).astype(np.float32)}
    raise ConfigError(f"no warmup inputs known for signature {signature!r}; "
                      f"known: {', '.join(contract.SIGNATURES)}")


def write_warmup_requests(savedmodel_version_dir, latent_dim: int, image_shape,
                          batch_sizes=(1, 8), signatures=contract.SIGNATURES,
                          model_name: str | None = None, seed: int = 0) -> Path:
    """Write one warmup PredictRequest per signature and batch size; returns the file's path.

    Latents are standard normal, images uniform in [0, 1) (fixed ``seed``). ``model_name`` defaults
    to the parent folder's name (``savedmodel/<name>/<version>``). Written atomically.
    """
    from export.warmup import write_records  # imports TensorFlow

    version_dir = Path(savedmodel_version_dir)
    if not (version_dir / "saved_model.pb").is_file():
        raise ArtifactError(f"{version_dir} is not a SavedModel version directory "
                            "(no saved_model.pb)")
    if not version_dir.name.isdigit():
        raise ArtifactError(f"{version_dir} must be an integer version directory "
                            "(savedmodel/<name>/<version>)")
    if int(latent_dim) < 1 or len(tuple(image_shape)) != 3 or min(image_shape) < 1:
        raise ConfigError(f"latent_dim must be >= 1 and image_shape (H, W, C), got "
                          f"{latent_dim!r}, {image_shape!r}")
    batch_sizes = tuple(int(b) for b in batch_sizes)
    if not batch_sizes or min(batch_sizes) < 1:
        raise ConfigError(f"batch_sizes must be positive integers, got {batch_sizes!r}")
    name = model_name or version_dir.parent.name
    rng = np.random.default_rng(seed)
    requests = [(signature, _warmup_inputs(signature, batch, int(latent_dim), tuple(image_shape), rng))
                for signature in signatures for batch in batch_sizes]
    out_dir = version_dir / WARMUP_DIR
    out_dir.mkdir(exist_ok=True)
    path = out_dir / WARMUP_FILE
    tmp = out_dir / f".{WARMUP_FILE}.{os.getpid()}.tmp"
    try:
        write_records(tmp, name, requests)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_warmup_requests(path) -> list:
    """The ``PredictRequest`` of every record of a warmup file (a directory means its warmup file)."""
    from export.warmup import read_predict_requests  # imports TensorFlow

    path = Path(path)
    if path.is_dir():
        path = path / WARMUP_DIR / WARMUP_FILE
    if not path.is_file():
        raise ArtifactError(f"no warmup file at {path}")
    try:
        return read_predict_requests(path)
    except ValueError as exc:
        raise ArtifactError(str(exc)) from None
