"""A SavedModel in TF Serving's layout without training, for the TF Serving kit, client and server tests.

``build_test_savedmodel`` writes the four signatures of ``keras_vae/export/contract.py`` from a small
random-init Keras 3 encoder/decoder pair; the tests rely only on the layout and the signatures. The
session fixtures ``tfs_export`` / ``tfs_loaded`` (tests/conftest.py) build versions 1 and 2 once.
"""
from __future__ import annotations

import os
from pathlib import Path

from keras_vae.export import contract

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


def call_direct(loaded, signature: str, **inputs) -> dict:
    """Call a SavedModel signature directly; returns ``{output: ndarray}``."""
    import tensorflow as tf

    fn = loaded.signatures[signature]
    return {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in inputs.items()}).items()}


def random_inputs(signature: str, batch: int, seed: int = 0) -> dict:
    """Deterministic inputs for a contract signature (latents N(0,1), images U[0,1))."""
    import numpy as np

    rng = np.random.default_rng(seed + batch)
    if signature in ("serving_default", "decode_uint8"):
        return {contract.LATENT_INPUT: rng.standard_normal((batch, TEST_LATENT_DIM)).astype("float32")}
    return {contract.IMAGE_INPUT: rng.random((batch, *TEST_IMAGE_SHAPE)).astype("float32")}


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batching_parameters_class():
    """``tensorflow.serving.BatchingParameters`` as a dynamic protobuf message class.

    tensorflow-serving-api ships no Python module for session_bundle_config.proto, so the message is
    declared here with the field numbers and types of TF Serving's
    tensorflow_serving/servables/tensorflow/session_bundle_config.proto (fields 1-7).
    """
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    pool = descriptor_pool.DescriptorPool()
    wrappers = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
    pool.Add(wrappers)
    f = descriptor_pb2.FileDescriptorProto(
        name="tensorflow_serving/servables/tensorflow/session_bundle_config.proto",
        package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    m = f.message_type.add(name="BatchingParameters")
    F = descriptor_pb2.FieldDescriptorProto
    for number, name, type_name in [(1, "max_batch_size", ".google.protobuf.Int64Value"),
                                    (2, "batch_timeout_micros", ".google.protobuf.Int64Value"),
                                    (3, "max_enqueued_batches", ".google.protobuf.Int64Value"),
                                    (4, "num_batch_threads", ".google.protobuf.Int64Value"),
                                    (5, "thread_pool_name", ".google.protobuf.StringValue")]:
        m.field.add(name=name, number=number, type=F.TYPE_MESSAGE, label=F.LABEL_OPTIONAL,
                    type_name=type_name)
    m.field.add(name="allowed_batch_sizes", number=6, type=F.TYPE_INT64, label=F.LABEL_REPEATED)
    m.field.add(name="pad_variable_length_inputs", number=7, type=F.TYPE_BOOL, label=F.LABEL_OPTIONAL)
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))
