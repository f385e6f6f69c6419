"""TF Serving warmup requests: ``<version>/assets.extra/tf_serving_warmup_requests``.

TF Serving replays these ``PredictionLog`` records when it loads a version, before it marks the
version AVAILABLE, so the first real request does not pay for graph tracing and memory setup.
The records are ``PredictionLog(predict_log=PredictLog(request=PredictRequest(...)))`` in a TFRecord
file: one per signature and batch size. Needs TensorFlow and tensorflow-serving-api (imported here).

Signatures: by default every signature of the export contract that the SavedModel has, i.e.
``serving_default``, ``decode_uint8``, ``encode``, ``reconstruct`` and, for exports that carry the
latent sampler, ``sample`` and ``sample_uint8`` (scalar inputs ``n`` = the batch size, int32, and
``seed``, int64). A record for a signature the SavedModel lacks would make TF Serving refuse to load
the version, so naming one is an error.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from keras_vae.export import contract
from keras_vae.errors import ArtifactError, ConfigError

__all__ = ["write_warmup_requests", "read_warmup_requests", "savedmodel_signatures", "WARMUP_FILE", "WARMUP_DIR"]

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"

_LATENT_SIGNATURES = ("serving_default", "decode_uint8")
_IMAGE_SIGNATURES = ("encode", "reconstruct")
KNOWN_SIGNATURES = contract.SIGNATURES + contract.SAMPLE_SIGNATURES


def _warmup_inputs(signature, batch, latent_dim, image_shape, rng, seed: int) -> dict:
    if signature in _LATENT_SIGNATURES:
        return {contract.LATENT_INPUT: rng.standard_normal((batch, latent_dim)).astype(np.float32)}
    if signature in _IMAGE_SIGNATURES:
        return {contract.IMAGE_INPUT: rng.random((batch, *image_shape)).astype(np.float32)}
    if signature in contract.SAMPLE_SIGNATURES:  # scalars: n images from the sampler's seed
        return {contract.SAMPLE_N_INPUT: np.int32(batch), contract.SAMPLE_SEED_INPUT: np.int64(seed)}
    raise ConfigError(f"no warmup inputs known for signature {signature!r}; "
                      f"known: {', '.join(KNOWN_SIGNATURES)}")


def savedmodel_signatures(version_dir) -> list[str]:
    """The callable signature names in ``version_dir/saved_model.pb`` (its "serve" meta graph)."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((Path(version_dir) / "saved_model.pb").read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ArtifactError(f"{version_dir}/saved_model.pb cannot be parsed ({type(exc).__name__}: {exc})") from None
    serve = [m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags]
    if not serve:
        raise ArtifactError(f"{version_dir}/saved_model.pb has no 'serve' meta graph (TF Serving loads that one)")
    return sorted(k for k in serve[0].signature_def if not k.startswith("__"))


def write_warmup_requests(savedmodel_version_dir, latent_dim: int, image_shape,
                          batch_sizes=(1, 8), signatures=None,
                          model_name: str | None = None, seed: int = 0) -> Path:
    """Write one warmup PredictRequest per signature and batch size; returns the file's path.

    ``signatures`` defaults to the contract's signatures the SavedModel has (module docstring).
    Latents are standard normal, images uniform in [0, 1) (fixed ``seed``); the sample signatures get
    ``n`` = the batch size and ``seed``. ``model_name`` defaults to the parent folder's name
    (``savedmodel/<name>/<version>``). Written atomically.
    """
    from keras_vae.export.warmup import write_records  # imports TensorFlow

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
    present = savedmodel_signatures(version_dir)
    if signatures is None:
        signatures = [s for s in KNOWN_SIGNATURES if s in present]
    if any(s in contract.SAMPLE_SIGNATURES for s in signatures) and not 0 <= int(seed) < 2 ** 32:
        raise ConfigError(f"seed must be in [0, 2^32) for the sample signatures' records, got {seed!r}")
    rng = np.random.default_rng(seed)
    requests = [(signature, _warmup_inputs(signature, batch, int(latent_dim), tuple(image_shape), rng, seed))
                for signature in signatures for batch in batch_sizes]
    missing = [s for s in signatures if s not in present]
    if missing:
        raise ArtifactError(f"{version_dir} has no signature {', '.join(map(repr, missing))} (it has "
                            f"{', '.join(present)}): TF Serving would refuse to load a version whose warmup "
                            "record names a missing signature")
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
    from keras_vae.export.warmup import read_predict_requests  # imports TensorFlow

    path = Path(path)
    if path.is_dir():
        path = path / WARMUP_DIR / WARMUP_FILE
    if not path.is_file():
        raise ArtifactError(f"no warmup file at {path}")
    try:
        return read_predict_requests(path)
    except ValueError as exc:
        raise ArtifactError(str(exc)) from None
