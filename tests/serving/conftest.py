"""Fixtures for the ONNX consumers: a real, small decoder.onnx built once per test session.

``build_test_decoder`` stands in for the exporter (``export/``) until it lands: it converts a small
random-init Keras 3 decoder to ONNX with tf2onnx exactly as the artifact contract
(``export/contract.py``) describes, and writes ``export.json`` next to it. Swap its body for the real
exporter later; nothing else in tests/serving depends on how the file was made.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from keras_vae.export import contract

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = REPO_ROOT / "serving" / "node"
WEB_DIR = REPO_ROOT / "serving" / "web"

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
        contract.META_SOURCE_RUN: "tests/serving/conftest.py::build_test_decoder",
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
                "made_by": "tests/serving/conftest.py::build_test_decoder"}
    (tmp_dir / contract.EXPORT_JSON).write_text(json.dumps(manifest, indent=2))
    return path


@pytest.fixture(scope="session")
def decoder_dir(tmp_path_factory) -> Path:
    """A read-only export folder with decoder.onnx and export.json (copy it before changing it)."""
    d = tmp_path_factory.mktemp("export")
    build_test_decoder(d)
    return d


@pytest.fixture(scope="session")
def decoder_path(decoder_dir) -> Path:
    return decoder_dir / contract.DECODER_ONNX


@pytest.fixture
def export_copy(decoder_dir, tmp_path) -> Path:
    """A private copy of the export folder that a test may modify."""
    d = tmp_path / "export"
    shutil.copytree(decoder_dir, d)
    return d


def ort_reference(decoder_path, z):
    """Reference decode with a plain onnxruntime session (no OnnxDecoder code involved)."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(decoder_path), providers=["CPUExecutionProvider"])
    return sess.run([contract.IMAGE_OUTPUT], {contract.LATENT_INPUT: np.asarray(z, np.float32)})[0]


def require_tool(condition: bool, reason: str) -> None:
    """Skip with a reason printed to the terminal (not only in the -ra summary)."""
    if not condition:
        print(f"\nSKIP: {reason}", file=sys.stderr)
        pytest.skip(reason)


def drive_explorer(export_dir, query: str, *args: str, timeout: float = 120) -> dict:
    """Serve ``export_dir`` (keras_vae.serving.demo), open ``?query`` in headless Chromium with serving/web/drive.mjs
    and ``args``; skips without the browser tools, asserts the page got ready without console errors and
    returns drive.mjs's report."""
    import subprocess

    from keras_vae.serving.demo import make_server, serve_in_thread, server_url

    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    require_tool(os.path.exists(chromium), f"{chromium} not found: apt-get install -y chromium")
    require_tool((WEB_DIR / "node_modules" / "playwright-core").is_dir(), "playwright-core missing: npm ci in serving/web")
    require_tool((WEB_DIR / "node_modules" / "onnxruntime-web" / "dist").is_dir(), "onnxruntime-web missing: npm ci")
    server = make_server(export_dir, port=0)
    serve_in_thread(server)
    try:
        proc = subprocess.run(["node", str(WEB_DIR / "drive.mjs"), "--url", f"{server_url(server)}?{query}", *args],
                              capture_output=True, text=True, timeout=timeout)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["state"] == "ready" and report["console"] == [], report
    return report


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


@pytest.fixture(scope="session")
def gmm_export(tmp_path_factory):
    """(run_dir, export_dir, sampler, report): the tiny MLP VAE of tests/export (latent 4, trained on 600
    embedded MNIST digits, which have labels) with ``hand_made_gmm_sampler`` as its sampler.json, exported
    once per session (read-only: copy it before changing it)."""
    from keras_vae.export.exporter import export_run
    from tests.export.conftest import make_test_run

    run = make_test_run(tmp_path_factory.mktemp("run-gmm"), "tiny-vae")
    sampler = hand_made_gmm_sampler()
    sampler.save(run / contract.SAMPLER_JSON)
    out = tmp_path_factory.mktemp("export-gmm") / "exp"
    return run, out, sampler, export_run(run, out)
