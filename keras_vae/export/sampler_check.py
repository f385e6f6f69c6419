"""The exporter's sampler check: SavedModel ``sample`` and sampler.onnx vs ``LatentSampler.sample``.

For each seed in ``contract.SAMPLER_PARITY_SEEDS`` and each batch size, the reference latents are
``sampler.sample(n, seed)`` (NumPy, portable noise). The SavedModel's ``sample`` signature (noise
drawn in the TF graph) and sampler.onnx fed with ``portable_noise(seed, n, d)`` must match them
within ``latent_tolerance`` (float32 round-off of the drawing rule plus one ulp of noise); the
signature's images must match the Keras decoder on the reference latents within the round-off bound of
``keras_vae.export.roundoff`` (weights moved by their backward error and the latents by ``latent_tolerance``),
``sample_uint8`` within ``floor(255 b) + 1`` grey levels.

A conditional export (``classes``) is checked the same way with a label per (seed, batch size), the classes in
turn: the reference is class label's sampler (``ClassSamplers.latents``) and the Keras decoder with that label.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from keras_vae.export import contract, roundoff
from keras_vae.export.errors import ParityError
from keras_vae.export.parity import artifact_arithmetics, parity_batch_sizes, uint8_levels
from keras_vae.export.savedmodel import call_signature
from keras_vae.export.sampler_onnx import compare_latents, latent_tolerance, run_sampler_onnx
from keras_vae.sampling.noise import portable_noise


def check_sampler_parity(model, sampler, loaded_savedmodel, sampler_session,
                         batch_sizes=None, seeds=contract.SAMPLER_PARITY_SEEDS, classes=None) -> dict[str, Any]:
    """The report entry ``parity.sampler`` of export.json; raises ParityError on a mismatch.
    ``batch_sizes`` default to ``keras_vae.export.parity.parity_batch_sizes(model)``; ``classes``: a conditional
    export's ``ClassSamplers``."""
    batch_sizes = tuple(batch_sizes or parity_batch_sizes(model))
    arithmetics = artifact_arithmetics(model)
    plan = roundoff.perturbation_plan(model, arithmetics)
    worst = {"savedmodel_z": 0.0, "onnx_z": 0.0, "savedmodel_image": 0.0, "savedmodel_uint8": 0.0}
    ratio = {"savedmodel_z": 0.0, "onnx_z": 0.0, "savedmodel_image": 0.0}
    image_bound = 0.0
    checked_labels = []
    for seed in seeds:
        for n in batch_sizes:
            eps, u = portable_noise(seed, n, sampler.latent_dim)
            inputs = {contract.SAMPLE_N_INPUT: np.int32(n), contract.SAMPLE_SEED_INPUT: np.int64(seed)}
            if classes is None:
                labels, decode_labels = None, {}
                reference = sampler.latents(eps, u)
                tolerance = latent_tolerance(sampler, eps, u)
            else:
                label = len(checked_labels) % classes.num_classes
                checked_labels.append(label)
                inputs[contract.LABEL_INPUT] = np.int32(label)
                labels = np.full(n, label, np.int32)
                decode_labels = {"labels": labels}
                reference = classes.latents(eps, u, labels)
                tolerance = classes.latent_tolerance(eps, u, labels)
            image = model.to_unit(model.decode(tf.constant(reference), training=False, **decode_labels)).numpy()
            # the signature decodes its own latents (within `tolerance` of the reference): move them too
            signs = roundoff.random_signs(reference.shape, np.random.default_rng(roundoff.PERTURBATION_SEED))
            moved_z = (reference + tolerance * signs).astype(np.float32)
            with roundoff.perturbed(plan):
                moved = model.to_unit(model.decode(tf.constant(moved_z), training=False, **decode_labels)).numpy()
            bound = roundoff.bound(image, moved, arithmetics)
            image_bound = max(image_bound, bound)
            outputs = {sig: call_signature(loaded_savedmodel, sig, inputs) for sig in contract.SAMPLE_SIGNATURES}
            latents = {"savedmodel_z": outputs["sample"][contract.LATENT_OUTPUT],
                       "onnx_z": run_sampler_onnx(sampler_session, eps, u, labels)}
            for key, got in latents.items():
                result = compare_latents(reference, got, tolerance)
                if not result["passed"]:
                    artifact = "SavedModel signature" if key == "savedmodel_z" else contract.SAMPLER_ONNX
                    raise ParityError("sample", artifact, n, contract.LATENT_OUTPUT, result["max_abs_diff"],
                                      float(np.max(tolerance)))
                worst[key] = max(worst[key], result["max_abs_diff"])
                ratio[key] = max(ratio[key], result["max_ratio"])
            diff = float(np.max(np.abs(outputs["sample"][contract.IMAGE_OUTPUT].astype(np.float64) - image)))
            if not diff <= bound:
                raise ParityError("sample", "SavedModel signature", n, contract.IMAGE_OUTPUT, diff, bound)
            as_uint8 = np.floor(np.clip(image, 0.0, 1.0) * 255.0 + 0.5)
            levels = float(np.max(np.abs(outputs["sample_uint8"][contract.IMAGE_OUTPUT].astype(np.float64) - as_uint8)))
            if not levels <= uint8_levels(bound):
                raise ParityError("sample_uint8", "SavedModel signature", n, contract.IMAGE_OUTPUT, levels,
                                  uint8_levels(bound))
            worst["savedmodel_image"] = max(worst["savedmodel_image"], diff)
            worst["savedmodel_uint8"] = max(worst["savedmodel_uint8"], levels)
            ratio["savedmodel_image"] = max(ratio["savedmodel_image"], diff / bound if bound > 0 else 0.0)
    return {"reference": "LatentSampler.sample (NumPy, portable noise) and Keras decode of its latents",
            "seeds": list(seeds), "batch_sizes": list(batch_sizes), "passed": True,
            **({"labels": checked_labels} if classes is not None else {}),
            "max_abs_diff": worst, "max_diff_over_bound": ratio,
            "latent_bound": "2 (d + 2) 2^-24 (|m| + |L| |eps|) + |L| ulp(eps), elementwise",
            "image_bound": image_bound, "uint8_bound": uint8_levels(image_bound), "bound": roundoff.describe()}
