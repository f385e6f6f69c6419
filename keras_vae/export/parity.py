"""Parity: the Keras model vs the reloaded SavedModel vs onnxruntime, on the same random inputs.

The Keras reference is computed here from the model's own methods (not from the exported
functions), so a signature that scales or names things wrongly shows up as a difference.
Each output's bound comes from float32 round-off of that network on those inputs
(``keras_vae.export.roundoff``): the Keras model is evaluated once more with its weights moved by
their round-off backward error, and the bound scales with the change that causes, so it follows
the precision, the fan-ins, the depth, the gain and the magnitudes of each network.
``decode_uint8`` may differ by ``floor(255 b) + 1`` grey levels, b the bound of the float image.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import tensorflow as tf

from keras_vae.export import contract, roundoff
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
    """Latents ~ N(0, I) and images ~ U[0, 1] of one batch size (and int32 labels for a conditional model)."""
    rng = np.random.default_rng(seed)
    inputs = {
        contract.LATENT_INPUT: rng.standard_normal((batch_size, model.latent_dim)).astype(np.float32),
        contract.IMAGE_INPUT: rng.uniform(0.0, 1.0, (batch_size, *model.image_shape)).astype(np.float32),
    }
    k = int(getattr(model, "num_classes", 0) or 0)
    if k:  # a conditional model: labels too, every class in turn from a random start
        inputs[contract.LABEL_INPUT] = ((np.arange(batch_size) + rng.integers(k)) % k).astype(np.int32)
    return inputs


def feeds(inputs: Mapping[str, np.ndarray], input_name: str) -> dict[str, np.ndarray]:
    """The named inputs of one signature or ONNX file: ``input_name``, and ``label`` when there is one."""
    return {name: inputs[name] for name in (input_name, contract.LABEL_INPUT) if name in inputs}


def keras_references(model, inputs: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """What serving_default, encode and reconstruct must return for ``inputs`` (``random_inputs``), computed
    eagerly from the Keras model's own methods; the encoder runs once (reconstruct decodes encode's mean)."""
    z, images = tf.constant(inputs[contract.LATENT_INPUT]), tf.constant(inputs[contract.IMAGE_INPUT])
    labels = {"labels": inputs[contract.LABEL_INPUT]} if contract.LABEL_INPUT in inputs else {}
    mean, log_var = model.encode(model.from_unit(images), training=False, **labels)
    return {"serving_default": {contract.IMAGE_OUTPUT: model.to_unit(model.decode(z, training=False, **labels)).numpy()},
            "encode": {contract.MEAN_OUTPUT: mean.numpy(), contract.LOG_VARIANCE_OUTPUT: log_var.numpy()},
            "reconstruct": {contract.IMAGE_OUTPUT: model.to_unit(model.decode(mean, training=False, **labels)).numpy()}}


def activation_elements(model) -> int:
    """Values per image of the largest tensor the encoder or decoder computes (their layers' outputs)."""
    largest = int(np.prod(model.image_shape))
    for network in (model.encoder, model.decoder):
        for layer in network.layers:
            try:
                outputs = layer.output
            except (AttributeError, ValueError):  # a layer never called symbolically
                continue
            for out in (outputs if isinstance(outputs, (list, tuple)) else [outputs]):
                dims = [d for d in tuple(out.shape)[1:]]
                if dims and all(isinstance(d, int) for d in dims):
                    largest = max(largest, math.prod(dims))
    return largest


def parity_batch_sizes(model, sizes: Sequence[int] = contract.PARITY_BATCH_SIZES,
                       budget: int = contract.PARITY_MAX_ACTIVATION_BYTES) -> tuple[int, ...]:
    """``sizes`` up to the largest whose biggest float32 activation fits ``budget`` bytes (batch 1 always):
    paper-256 (256x256x128 per image, 32 MiB) checks batches 1 and 7, celeba-64 and smaller 1, 7 and 64."""
    per_image = 4 * activation_elements(model)
    kept = tuple(b for b in sizes if b == 1 or b * per_image <= budget)
    return kept or (1,)


def uint8_levels(image_bound: float) -> int:
    """Grey levels two uint8 images may differ by when their float sources differ by ``image_bound``:
    floor(clip(x) 255 + 0.5) moves by at most floor(255 b) + 1."""
    return int(math.floor(255.0 * image_bound)) + 1


def artifact_arithmetics(model) -> tuple[roundoff.Arithmetic, roundoff.Arithmetic]:
    """(Keras, artifacts): the SavedModel runs in the Keras model's arithmetic, onnxruntime in float32;
    one bound serves both with the less precise of the two."""
    keras_side = roundoff.keras_arithmetic(model)
    other = keras_side if keras_side.storage >= roundoff.FLOAT32.storage else roundoff.FLOAT32
    return keras_side, other


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
                 batch_sizes: Sequence[int] | None = None, seed: int = 0) -> dict[str, Any]:
    """Compare every signature (and its ONNX file, where there is one) with the Keras model.

    ``batch_sizes`` default to ``parity_batch_sizes(model)``. Returns the report for export.json (per
    signature and batch: the max abs differences and the bounds); raises ``ParityError`` naming the first
    signature, artifact, output and batch size whose max abs difference exceeds its bound.
    """
    batch_sizes = tuple(batch_sizes or parity_batch_sizes(model))
    arithmetics = artifact_arithmetics(model)
    plan = roundoff.perturbation_plan(model, arithmetics)
    signatures: dict[str, Any] = {}
    for signature, (_, onnx_file) in SIGNATURE_INPUTS.items():
        uint8 = signature == "decode_uint8"
        signatures[signature] = {"units": "grey levels" if uint8 else "abs", "savedmodel": {}, "bound": {},
                                 **({"onnx": {}} if onnx_file else {})}
    for batch in batch_sizes:
        inputs = random_inputs(model, batch, seed + batch)
        float_signatures = [s for s in SIGNATURE_INPUTS if s != "decode_uint8"]
        references = keras_references(model, inputs)
        image = references["serving_default"][contract.IMAGE_OUTPUT]
        references["decode_uint8"] = {contract.IMAGE_OUTPUT: np.floor(np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)}
        with roundoff.perturbed(plan):
            moved = keras_references(model, inputs)
        bounds = {s: {k: roundoff.bound(references[s][k], moved[s][k], arithmetics) for k in references[s]}
                  for s in float_signatures}
        bounds["decode_uint8"] = {contract.IMAGE_OUTPUT: uint8_levels(bounds["serving_default"][contract.IMAGE_OUTPUT])}
        for signature, (input_name, onnx_file) in SIGNATURE_INPUTS.items():
            entry, x, reference = signatures[signature], feeds(inputs, input_name), references[signature]
            artifacts = {"savedmodel": call_signature(loaded_savedmodel, signature, x)}
            if onnx_file:
                session = onnx_sessions[onnx_file]
                names = [o.name for o in session.get_outputs()]
                artifacts["onnx"] = dict(zip(names, session.run(None, x)))
            entry["bound"][str(batch)] = bounds[signature]
            for artifact, outputs in artifacts.items():
                label = "SavedModel signature" if artifact == "savedmodel" else onnx_file
                try:
                    diffs = _max_diff(reference, outputs)
                except KeyError as exc:
                    name = str(exc.args[0])
                    raise ParityError(signature, label, batch, name, float("inf"), bounds[signature][name]) from None
                for output, diff in diffs.items():
                    if not diff <= bounds[signature][output]:  # NaN fails too
                        raise ParityError(signature, label, batch, output, diff, bounds[signature][output])
                entry[artifact][str(batch)] = max(diffs.values())
                ratio = max(d / b if b > 0 else (0.0 if d == 0 else math.inf)
                            for d, b in ((diffs[k], bounds[signature][k]) for k in diffs))
                entry.setdefault("max_diff_over_bound", {})
                entry["max_diff_over_bound"][artifact] = max(entry["max_diff_over_bound"].get(artifact, 0.0), ratio)
    for entry in signatures.values():
        entry["tolerance"] = max(max(b.values()) for b in entry["bound"].values())  # the loosest bound used
        for artifact in ("savedmodel", "onnx"):
            if artifact in entry:
                entry[f"{artifact}_max_abs_diff"] = max(entry[artifact].values())
    return {"reference": "keras (eager, training=False)", "batch_sizes": list(batch_sizes),
            "arithmetic": {"keras": arithmetics[0].name, "artifacts": arithmetics[1].name},
            "bound": roundoff.describe(), "passed": True, "signatures": signatures}
