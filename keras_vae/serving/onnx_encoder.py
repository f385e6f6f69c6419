"""Encode images with an exported ``encoder.onnx`` through onnxruntime (no TensorFlow import).

The file follows ``export/contract.py``: input ``image`` float32 [N, H, W, C] in [0, 1], outputs
``mean`` and ``log_variance`` float32 [N, latent_dim] (the diagonal Gaussian posterior q(z|x)),
dynamic batch axis, ``keras_vae.*`` metadata_props with ``keras_vae.role = "encoder"``.
Like ``OnnxDecoder`` one instance holds one InferenceSession and is safe to share between threads. A
class-conditional export's encoder.onnx is q(z|x, y): it also takes ``label`` int32 [N] (``encode(images,
label=K)``; ``num_classes`` > 0), which an unconditional one refuses.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_vae.export import contract
from keras_vae.errors import ArtifactError, DataError
from keras_vae.serving.onnx_decoder import (_label_classes, check_labels, default_providers, refuse_run_folder,
                                             verify_export_json)


def resolve_encoder_path(path) -> Path:
    """An encoder.onnx path, or an export folder that contains one."""
    path = Path(path)
    if path.is_dir():
        refuse_run_folder(path, contract.ENCODER_ONNX)
        path = path / contract.ENCODER_ONNX
    if not path.is_file():
        raise ArtifactError(f"encoder file not found: {path} "
                            f"(expected an export folder or its {contract.ENCODER_ONNX})")
    return path


class OnnxEncoder:
    """An ``encoder.onnx`` behind a NumPy API: ``encode(images) -> (mean, log_variance)``.

    ``OnnxEncoder(path)`` accepts the .onnx file or its export folder; ``verify=True`` checks the
    file's SHA-256 against export.json when that file sits beside it.
    """

    def __init__(self, path, providers=None, max_batch: int = 1024, verify: bool = True):
        import onnxruntime as ort

        if int(max_batch) < 1:
            raise DataError(f"max_batch must be >= 1, got {max_batch}")
        self.max_batch = int(max_batch)
        self.path = resolve_encoder_path(path)
        self.verified = verify_export_json(self.path) if verify else False
        try:
            self._session = ort.InferenceSession(str(self.path), providers=list(providers or default_providers()))
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"onnxruntime cannot load {self.path}: {first}") from exc
        meta = dict(self._session.get_modelmeta().custom_metadata_map)
        role = meta.get(contract.META_ROLE)
        if role != "encoder":
            raise ArtifactError(f"{self.path} is a keras-vae {role or 'file without a role'!r}, not an encoder "
                                f"({contract.META_ROLE}); pass encoder.onnx or its export folder")
        try:
            self.latent_dim = int(meta[contract.META_LATENT_DIM])
            self.image_shape = tuple(int(v) for v in json.loads(meta[contract.META_IMAGE_SHAPE]))
        except (KeyError, ValueError, TypeError) as exc:
            raise ArtifactError(f"{self.path} has missing or malformed keras_vae metadata ({exc}): "
                                "re-export it") from None
        outputs = [o.name for o in self._session.get_outputs()]
        inputs = [i.name for i in self._session.get_inputs()]
        wanted = (contract.MEAN_OUTPUT, contract.LOG_VARIANCE_OUTPUT)
        self.num_classes = _label_classes(self.path, meta, self._session.get_inputs())
        if sorted(inputs) != sorted([contract.IMAGE_INPUT, *([contract.LABEL_INPUT] if self.num_classes else [])]) \
                or any(name not in outputs for name in wanted):
            raise ArtifactError(f"{self.path} must have input {contract.IMAGE_INPUT!r} and outputs {list(wanted)}; "
                                f"it has inputs {inputs}, outputs {outputs}")
        self.metadata = meta

    def __repr__(self) -> str:
        return f"OnnxEncoder({str(self.path)!r}, latent_dim={self.latent_dim}, image_shape={self.image_shape})"

    def _as_batch(self, images) -> np.ndarray:
        """uint8 0..255 or float in [0, 1], [N, H, W, C] or one [H, W, C] image -> float32 [N, H, W, C]."""
        arr = np.asarray(images)
        if arr.ndim == len(self.image_shape):
            arr = arr[None]
        if arr.ndim != 4 or tuple(arr.shape[1:]) != self.image_shape:
            raise DataError(f"images have shape {list(np.shape(images))}: this encoder expects "
                            f"[N, {', '.join(map(str, self.image_shape))}]")
        if arr.dtype == np.uint8:
            return (arr.astype(np.float32) / 255.0)
        if not np.issubdtype(arr.dtype, np.floating):
            raise DataError(f"images have dtype {arr.dtype}: expected uint8 0..255 or float in [0, 1]")
        arr = arr.astype(np.float32, copy=False)
        if arr.size and (not np.all(np.isfinite(arr)) or arr.min() < 0.0 or arr.max() > 1.0):
            raise DataError("images must be finite floats in [0, 1] (divide uint8 images by 255, or pass uint8)")
        return np.ascontiguousarray(arr)

    def encode(self, images, label=None) -> tuple[np.ndarray, np.ndarray]:
        """Images -> (mean, log_variance) of q(z|x), each float32 [N, latent_dim] (split into max_batch chunks);
        a class-conditional export's q(z|x, y) needs ``label`` (one integer in [0, num_classes) or N)."""
        batch = self._as_batch(images)
        labels = check_labels(label, len(batch), self.num_classes)
        names = [contract.MEAN_OUTPUT, contract.LOG_VARIANCE_OUTPUT]
        if len(batch) == 0:
            empty = np.zeros((0, self.latent_dim), np.float32)
            return empty, empty.copy()

        def feeds(i):
            feed = {contract.IMAGE_INPUT: batch[i:i + self.max_batch]}
            if labels is not None:
                feed[contract.LABEL_INPUT] = labels[i:i + self.max_batch]
            return feed

        parts = [self._session.run(names, feeds(i)) for i in range(0, len(batch), self.max_batch)]
        return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
