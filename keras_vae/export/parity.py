"""Parity: the Keras model vs the reloaded SavedModel vs onnxruntime, on the same random inputs.

The Keras reference is computed here from the model's own methods (not from the exported
functions), so a signature that scales or names things wrongly shows up as a difference.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import tensorflow as tf

from keras_vae.export import contract
from keras_vae.export.errors import ParityError
from keras_vae.export.savedmodel import call_signature

# signature -> (its input, the ONNX file that implements it, or None)
SIGNATURE_INPUTS = {
    "serving_default": (contract.LATENT_INPUT, contract.DECODER_ONNX),
    "decode_uint8": (contract.LATENT_INPUT, None),
    "encode": (contract.IMAGE_INPUT, contract.ENCODER_ONNX),
    "reconstruct": (contract.IMAGE_INPUT, None),
}


def random_inputs(model, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """Latents ~ N(0, I) and images ~ U[0, 1] of one batch size."""
    rng = np.random.default_rng(seed)
    return {
        contract.LATENT_INPUT: rng.standard_normal((batch_size, model.latent_dim)).astype(np.float32),
        contract.IMAGE_INPUT: rng.uniform(0.0, 1.0, (batch_size, *model.image_shape)).astype(np.float32),
    }


def keras_reference(model, signature: str, x: np.ndarray) -> dict[str, np.ndarray]:
    """What signature ``signature`` must return, computed eagerly from the Keras model."""
    x = tf.constant(x)
    if signature in ("serving_default", "decode_uint8"):
        image = model.to_unit(model.decode(x, training=False)).numpy()
        if signature == "decode_uint8":
            image = np.floor(np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        return {contract.IMAGE_OUTPUT: image}
    if signature == "encode":
        mean, log_var = model.encode(model.from_unit(x), training=False)
        return {contract.MEAN_OUTPUT: mean.numpy(), contract.LOG_VARIANCE_OUTPUT: log_var.numpy()}
    if signature == "reconstruct":
        mean, _ = model.encode(model.from_unit(x), training=False)
        return {contract.IMAGE_OUTPUT: model.to_unit(model.decode(mean, training=False)).numpy()}
    raise ValueError(f"unknown signature {signature!r}")


def _max_diff(reference: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for key, ref in reference.items():
        if key not in got:
            raise KeyError(key)
        value = np.asarray(got[key])
        if value.shape != ref.shape:
            out[key] = float("inf")
        else:
            out[key] = float(np.max(np.abs(value.astype(np.float64) - ref.astype(np.float64))))
    return out


def check_parity(model, loaded_savedmodel, onnx_sessions: Mapping[str, Any],
                 batch_sizes=contract.PARITY_BATCH_SIZES, tolerance: float = contract.PARITY_TOLERANCE,
                 seed: int = 0) -> dict[str, Any]:
    """Compare every signature (and its ONNX file, where there is one) with the Keras model.

    Returns the report for export.json; raises ``ParityError`` naming the first signature,
    artifact, output and batch size whose max abs difference exceeds the tolerance
    (``PARITY_UINT8_TOLERANCE`` grey levels for ``decode_uint8``).
    """
    signatures: dict[str, Any] = {}
    for signature, (input_name, onnx_file) in SIGNATURE_INPUTS.items():
        limit = contract.PARITY_UINT8_TOLERANCE if signature == "decode_uint8" else tolerance
        entry: dict[str, Any] = {"tolerance": limit, "units": "grey levels" if signature == "decode_uint8" else "abs",
                                 "savedmodel": {}}
        if onnx_file:
            entry["onnx"] = {}
        for batch in batch_sizes:
            x = random_inputs(model, batch, seed + batch)[input_name]
            reference = keras_reference(model, signature, x)
            artifacts = {"savedmodel": call_signature(loaded_savedmodel, signature, {input_name: x})}
            if onnx_file:
                session = onnx_sessions[onnx_file]
                names = [o.name for o in session.get_outputs()]
                artifacts["onnx"] = dict(zip(names, session.run(None, {input_name: x})))
            for artifact, outputs in artifacts.items():
                label = "SavedModel signature" if artifact == "savedmodel" else onnx_file
                try:
                    diffs = _max_diff(reference, outputs)
                except KeyError as exc:
                    raise ParityError(signature, label, batch, str(exc.args[0]), float("inf"), limit) from None
                for output, diff in diffs.items():
                    if not diff <= limit:  # NaN fails too
                        raise ParityError(signature, label, batch, output, diff, limit)
                entry[artifact][str(batch)] = max(diffs.values())
        for artifact in ("savedmodel", "onnx"):
            if artifact in entry:
                entry[f"{artifact}_max_abs_diff"] = max(entry[artifact].values())
        signatures[signature] = entry
    return {"reference": "keras (eager, training=False)", "batch_sizes": list(batch_sizes),
            "tolerance": tolerance, "passed": True, "signatures": signatures}
