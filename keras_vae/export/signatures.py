"""The exported functions: decode, decode_uint8, encode and reconstruct as tf.functions.

Clients see images in [0, 1] (float32) or uint8, whatever the model's internal range; the
scaling lives here, inside the signatures. Each function takes one named tensor with a dynamic
batch axis (a class-conditional model: that tensor and ``label``, int32 [N]) and returns a dict of
named tensors (the names of ``keras_vae.export.contract``).

The label enters the networks as the one-hot ``Cast(Equal(label[:, None], range(K)))`` (plain ops in
every runtime). With ``checks`` the functions assert, before anything is computed, that each label lies in
[0, K) and that there is one per row (TF Serving then answers InvalidArgument naming the input); the ONNX
graphs are converted from the functions without checks (clients check labels before they call).
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from keras_vae.export import contract


def to_uint8(images_unit):
    """[0, 1] float -> uint8 with serving's rule: floor(clip(x, 0, 1) * 255 + 0.5)."""
    return tf.cast(tf.floor(tf.clip_by_value(images_unit, 0.0, 1.0) * 255.0 + 0.5), tf.uint8)


def latent_spec(model) -> tf.TensorSpec:
    return tf.TensorSpec([None, model.latent_dim], tf.float32, name=contract.LATENT_INPUT)


def image_spec(model) -> tf.TensorSpec:
    return tf.TensorSpec([None, *model.image_shape], tf.float32, name=contract.IMAGE_INPUT)


def label_spec(batched: bool = True) -> tf.TensorSpec:
    """int32 ``label``: [N] beside a batch, a scalar in the sample signatures."""
    return tf.TensorSpec([None] if batched else [], tf.int32, name=contract.LABEL_INPUT)


def num_classes(model) -> int:
    """K of a class-conditional model, 0 for an unconditional one."""
    return int(getattr(model, "num_classes", 0) or 0)


def label_one_hot(label, k: int):
    """int32 labels [N] -> float32 one-hot [N, K] with Equal and Cast (no OneHot op; an out-of-range label
    gives a row of zeros, which the checked functions refuse first)."""
    return tf.cast(tf.equal(label[:, None], tf.range(k, dtype=tf.int32)[None, :]), tf.float32)


def check_label(label, k: int, signature: str, rows=None):
    """``label`` after assertions that it lies in [0, K) (and has ``rows`` entries): InvalidArgument errors
    naming the input, its range and the fix (no quotes: TF escapes them in the message)."""
    label_is = (f"input label, the class of {'each row' if rows is not None else 'all n draws'}, is an integer in "
                f"[0, {k})")
    checks = [
        tf.debugging.assert_greater_equal(label, tf.constant(0, tf.int32),
                                          message=f"{signature}: label must be >= 0 ({label_is})"),
        tf.debugging.assert_less(label, tf.constant(k, tf.int32),
                                 message=f"{signature}: label must be < {k} ({label_is})"),
    ]
    if rows is not None:
        checks.append(tf.debugging.assert_equal(
            tf.shape(label)[0], rows, message=f"{signature}: label must have one entry per row of the batch"))
    with tf.control_dependencies(checks):
        return tf.identity(label)


def make_functions(model, checks: bool = True) -> dict[str, tuple[Callable, tf.TensorSpec | list]]:
    """{signature name: (tf.function, its input spec, or [spec, label spec] for a conditional model)} for a
    ``LatentVariableModel``; ``checks=False`` leaves out the label assertions (the ONNX conversion)."""
    k = num_classes(model)
    if k:
        return _conditional_functions(model, k, checks)

    def decode_unit(z):
        return model.to_unit(model.decode(z, training=False))

    def encode_unit(image):
        return model.encode(model.from_unit(image), training=False)

    @tf.function(input_signature=[latent_spec(model)])
    def decode(z):
        return {contract.IMAGE_OUTPUT: decode_unit(z)}

    @tf.function(input_signature=[latent_spec(model)])
    def decode_uint8(z):
        return {contract.IMAGE_OUTPUT: to_uint8(decode_unit(z))}

    @tf.function(input_signature=[image_spec(model)])
    def encode(image):
        mean, log_var = encode_unit(image)
        return {contract.MEAN_OUTPUT: mean, contract.LOG_VARIANCE_OUTPUT: log_var}

    @tf.function(input_signature=[image_spec(model)])
    def reconstruct(image):
        mean, _ = encode_unit(image)
        return {contract.IMAGE_OUTPUT: decode_unit(mean)}

    return {
        "serving_default": (decode, latent_spec(model)),
        "decode_uint8": (decode_uint8, latent_spec(model)),
        "encode": (encode, image_spec(model)),
        "reconstruct": (reconstruct, image_spec(model)),
    }


def _conditional_functions(model, k: int, checks: bool):
    def one_hot(label, batch, signature):
        if checks:
            label = check_label(label, k, signature, tf.shape(batch)[0])
        return label_one_hot(label, k)

    def decode_unit(z, labels):
        return model.to_unit(model.decode(z, training=False, labels=labels))

    def encode_unit(image, labels):
        return model.encode(model.from_unit(image), training=False, labels=labels)

    z_specs, image_specs = [latent_spec(model), label_spec()], [image_spec(model), label_spec()]

    @tf.function(input_signature=z_specs)
    def decode(z, label):
        return {contract.IMAGE_OUTPUT: decode_unit(z, one_hot(label, z, "decode"))}

    @tf.function(input_signature=z_specs)
    def decode_uint8(z, label):
        return {contract.IMAGE_OUTPUT: to_uint8(decode_unit(z, one_hot(label, z, "decode_uint8")))}

    @tf.function(input_signature=image_specs)
    def encode(image, label):
        mean, log_var = encode_unit(image, one_hot(label, image, "encode"))
        return {contract.MEAN_OUTPUT: mean, contract.LOG_VARIANCE_OUTPUT: log_var}

    @tf.function(input_signature=image_specs)
    def reconstruct(image, label):
        labels = one_hot(label, image, "reconstruct")
        mean, _ = encode_unit(image, labels)
        return {contract.IMAGE_OUTPUT: decode_unit(mean, labels)}

    return {"serving_default": (decode, z_specs), "decode_uint8": (decode_uint8, z_specs),
            "encode": (encode, image_specs), "reconstruct": (reconstruct, image_specs)}
