"""The exported functions: decode, decode_uint8, encode and reconstruct as tf.functions.

Clients see images in [0, 1] (float32) or uint8, whatever the model's internal range; the
scaling lives here, inside the signatures. Each function takes one named tensor with a dynamic
batch axis and returns a dict of named tensors (the names of ``keras_vae.export.contract``).
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


def make_functions(model) -> dict[str, tuple[Callable, tf.TensorSpec]]:
    """{signature name: (tf.function, its input spec)} for a ``LatentVariableModel``."""

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
