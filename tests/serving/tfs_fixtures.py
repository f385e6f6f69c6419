"""Fixtures for the TF Serving kit and client tests (imported by tests/serving/test_tfserving*.py).

``build_test_savedmodel`` stands in for the exporter (``export/``) until it lands: it writes a
SavedModel in TF Serving's layout with the four signatures of ``export/contract.py``, from a small
random-init Keras 3 encoder/decoder pair. Swap its body for the real exporter later; the tests only
rely on the layout and the signatures.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from export import contract

TEST_LATENT_DIM = 4
TEST_IMAGE_SHAPE = (16, 16, 1)
TEST_MODEL_NAME = "tinyvae"


def build_test_savedmodel(base_dir, name: str = TEST_MODEL_NAME, version: int = 1,
                          latent_dim: int = TEST_LATENT_DIM, image_shape=TEST_IMAGE_SHAPE,
                          seed: int = 0) -> Path:
    """Write ``base_dir/savedmodel/<name>/<version>/`` with the contract's four signatures.

    Encoder: Conv(8, stride 2) -> Flatten -> Dense(2*latent) split into mean/log_variance.
    Decoder: Dense -> Reshape(H/2, W/2, 8) -> Conv2DTranspose(C, stride 2) -> sigmoid (so [0, 1]).
    Returns the version directory. Imports TensorFlow (only here, only in tests).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    h, w, c = image_shape
    keras.utils.set_random_seed(seed)
    x_in = keras.Input(image_shape, name=contract.IMAGE_INPUT)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x_in)
    x = keras.layers.Flatten()(x)
    stats = keras.layers.Dense(2 * latent_dim)(x)
    encoder = keras.Model(x_in, stats, name="encoder")

    z_in = keras.Input((latent_dim,), name=contract.LATENT_INPUT)
    y = keras.layers.Dense((h // 2) * (w // 2) * 8, activation="relu")(z_in)
    y = keras.layers.Reshape((h // 2, w // 2, 8))(y)
    y = keras.layers.Conv2DTranspose(c, 3, strides=2, padding="same", activation="sigmoid")(y)
    decoder = keras.Model(z_in, y, name="decoder")

    z_spec = tf.TensorSpec([None, latent_dim], tf.float32, name=contract.LATENT_INPUT)
    image_spec = tf.TensorSpec([None, h, w, c], tf.float32, name=contract.IMAGE_INPUT)

    def decode(z):
        return {contract.IMAGE_OUTPUT: decoder(z, training=False)}

    def decode_uint8(z):
        image = decoder(z, training=False)
        return {contract.IMAGE_OUTPUT: tf.cast(tf.round(tf.clip_by_value(image, 0.0, 1.0) * 255.0),
                                               tf.uint8)}

    def encode(image):
        mean, log_variance = tf.split(encoder(image, training=False), 2, axis=-1)
        return {contract.MEAN_OUTPUT: mean, contract.LOG_VARIANCE_OUTPUT: log_variance}

    def reconstruct(image):
        mean, _ = tf.split(encoder(image, training=False), 2, axis=-1)
        return {contract.IMAGE_OUTPUT: decoder(mean, training=False)}

    archive = keras.export.ExportArchive()
    archive.track(encoder)
    archive.track(decoder)
    archive.add_endpoint("serving_default", decode, input_signature=[z_spec])
    archive.add_endpoint("decode_uint8", decode_uint8, input_signature=[z_spec])
    archive.add_endpoint("encode", encode, input_signature=[image_spec])
    archive.add_endpoint("reconstruct", reconstruct, input_signature=[image_spec])
    version_dir = Path(base_dir) / contract.SAVEDMODEL_DIR / name / str(int(version))
    archive.write_out(str(version_dir), verbose=False)
    return version_dir
