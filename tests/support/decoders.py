"""A real, small ONNX decoder without training, and a hand-made GMM sampler.

``build_test_decoder`` converts a small random-init Keras 3 decoder to ONNX with tf2onnx exactly as the
artifact contract (``keras_vae/export/contract.py``) describes, and writes ``export.json`` next to it: the
ONNX consumers (OnnxDecoder, Node, the browser explorer) are tested on it without a trained run.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from keras_vae.export import contract

TEST_LATENT_DIM = 8
TEST_IMAGE_SHAPE = (28, 28, 1)


def build_test_decoder(tmp_dir, latent_dim: int = TEST_LATENT_DIM, image_shape=TEST_IMAGE_SHAPE,
                       widths=(16,), seed: int = 0) -> Path:
    """Write ``tmp_dir/decoder.onnx`` (+ ``export.json``) for a random-init Keras 3 conv decoder.

    Architecture: Dense -> Reshape(H/2^k, W/2^k, widths[0]) -> k = len(widths) Conv2DTranspose layers
    (kernel 3, stride 2, "same"; filters widths[1:], then C) -> sigmoid. Returns the
    path of decoder.onnx. Imports TensorFlow (only here, only in tests and benchmarks).
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import onnx
    import tensorflow as tf
    import tf2onnx

    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    h, w, c = image_shape
    k = len(widths)
    if h % 2**k or w % 2**k:
        raise ValueError(f"image_shape {image_shape} not divisible by 2**{k}")
    first = widths[0]
    keras.utils.set_random_seed(seed)
    z_in = keras.Input((latent_dim,), name="z")
    x = keras.layers.Dense((h // 2**k) * (w // 2**k) * first, activation="relu")(z_in)
    x = keras.layers.Reshape((h // 2**k, w // 2**k, first))(x)
    convs = list(widths[1:]) + [c]
    for i, f in enumerate(convs):
        act = "relu" if i < len(convs) - 1 else None
        x = keras.layers.Conv2DTranspose(f, 3, strides=2, padding="same", activation=act)(x)
    logits_model = keras.Model(z_in, x)
    # Random init gives nearly flat grey images; scale the last layer so logits have std ~1.5
    # (visible structure in screenshots, uint8 values that actually vary).
    probe = np.random.default_rng(seed).standard_normal((64, latent_dim)).astype("float32")
    gain = 1.5 / float(np.std(logits_model.predict(probe, verbose=0)))
    last = logits_model.layers[-1]
    last.set_weights([wt * gain for wt in last.get_weights()])
    out = keras.layers.Activation("sigmoid", name="image")(x)
    model = keras.Model(z_in, out, name="decoder")
    assert tuple(model.output_shape[1:]) == tuple(image_shape), model.output_shape

    @tf.function(input_signature=[tf.TensorSpec([None, latent_dim], tf.float32, name=contract.LATENT_INPUT)])
    def decode(z):
        return {contract.IMAGE_OUTPUT: model(z, training=False)}

    proto, _ = tf2onnx.convert.from_function(
        decode, input_signature=decode.input_signature, opset=17)
    meta = {
        contract.META_LATENT_DIM: str(latent_dim),
        contract.META_IMAGE_SHAPE: json.dumps(list(image_shape)),
        contract.META_VALUE_RANGE: "[0, 1]",
        contract.META_MODEL_KIND: "vae",
        contract.META_PACKAGE_VERSION: "0.1.0",
        contract.META_SOURCE_RUN: "tests/support/decoders.py::build_test_decoder",
        contract.META_SOURCE_SHA256: "0" * 64,
        contract.META_ROLE: "decoder",
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    path = tmp_dir / contract.DECODER_ONNX
    onnx.save(proto, str(path))
    data = path.read_bytes()
    manifest = {"files": {contract.DECODER_ONNX: {"sha256": hashlib.sha256(data).hexdigest(),
                                                  "bytes": len(data)}},
                "made_by": "tests/support/decoders.py::build_test_decoder"}
    (tmp_dir / contract.EXPORT_JSON).write_text(json.dumps(manifest, indent=2))
    return path


def hand_made_gmm_sampler():
    """A 3-component GMM over latent 4 with full Cholesky factors (every runtime must get the component
    choice, the means and the factors right)."""
    import numpy as np

    from keras_vae.sampling.samplers import LatentSampler

    d = 4
    rng = np.random.default_rng(4)
    means = np.array([[2.0, 0.0, -1.0, 0.5], [-2.0, 1.0, 0.0, 0.0], [0.0, -2.5, 1.5, -1.0]])
    tril = np.tril(rng.normal(size=(3, d, d)) * 0.3, -1) + np.eye(d)[None] * np.array([0.5, 1.0, 0.8])[:, None, None]
    return LatentSampler("gmm", np.array([0.25, 0.45, 0.3]), means, tril,
                         fitted_on={"examples": 0, "mode": "test"}, selection={"note": "hand-made for tests"})


def hand_made_flow_sampler(d: int = 4, couplings: int = 4, hidden: int = 8, seed: int = 5):
    """A RealNVP ``flow`` sampler over latent ``d`` with random (untrained) weights large enough that every
    coupling bends its input (log-scales reach the clamp's curved part), on a base mixture (d = 4: the
    3-component ``hand_made_gmm_sampler``, so the component choice matters; else one Gaussian) and a full
    whitening factor."""
    import numpy as np

    from keras_vae.sampling.samplers import Coupling, make_flow
    from keras_vae.sampling.flow_fit import coupling_splits
    from keras_vae.sampling.samplers import LatentSampler

    rng = np.random.default_rng(seed)
    layers = []
    for cond, trans in coupling_splits(d, couplings, seed):
        widths = [len(cond), hidden, hidden, 2 * len(trans)]
        kernels = tuple((rng.normal(size=(widths[j], widths[j + 1])) * (0.7 if j < 2 else 0.15)).astype(np.float32)
                        for j in range(3))
        biases = tuple((rng.normal(size=widths[j + 1]) * 0.1).astype(np.float32) for j in range(3))
        layers.append(Coupling(cond, trans, kernels, biases))
    if d == 4:
        base = hand_made_gmm_sampler()
    else:
        base = LatentSampler("gaussian", np.ones(1), rng.normal(size=(1, d)) * 0.5,
                             (np.tril(rng.normal(size=(d, d)) * 0.2, -1) + np.eye(d))[None])
    mean = np.linspace(-0.5, 0.5, d)
    tril = np.tril(rng.normal(size=(d, d)) * 0.3, -1) + np.diag(np.linspace(0.8, 1.6, d))
    return make_flow(base, mean, tril, layers, fitted_on={"examples": 0, "mode": "test"},
                     selection={"note": "hand-made for tests"})
