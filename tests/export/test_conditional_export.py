"""Class-conditional exports: what the contract says (export.json, signatures, ONNX inputs and metadata), the class
sampler table against each class's own drawing rule, the label checks of every runtime, and that unconditional
exports take no label.

The export is the session's ``conditional_export`` (tests.support.conditional: tiny-vae with 3 classes, class
samplers for classes 0 (a 3-component GMM) and 1 (a full-covariance Gaussian), none for class 2).
"""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from keras_vae.errors import ArtifactError, DataError
from keras_vae.export import contract
from keras_vae.export.class_table import ClassSamplers
from keras_vae.export.sampler_onnx import build_class_sampler_proto, compare_latents, run_sampler_onnx
from keras_vae.sampling.noise import portable_noise
from keras_vae.sampling.samplers import prior_sampler

K, D = 3, 4
PLAIN_OPS = {"Unsqueeze", "LessOrEqual", "Cast", "ReduceSum", "Min", "Gather", "MatMul", "Squeeze", "Add", "Mul"}
LABEL = {"dtype": "int32", "shape": ["N"]}


def _classes() -> ClassSamplers:
    from tests.support.conditional import hand_made_class_samplers

    stored = hand_made_class_samplers()
    return ClassSamplers((stored[0], stored[1], prior_sampler(D)), ("test",) * K)


def _session(proto):
    import onnxruntime as ort

    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------------------------- fast: no TensorFlow
def test_class_sampler_graph_draws_each_row_by_its_class_rule():
    """sampler.onnx of a conditional export: row i follows class label_i's own rule (component choice on both sides
    of each cumulative weight, means, Cholesky factors), with plain ONNX ops only."""
    classes = _classes()
    proto = build_class_sampler_proto(classes, {contract.META_ROLE: "sampler"})
    onnx.checker.check_model(proto, full_check=True)
    assert {node.op_type for node in proto.graph.node} <= PLAIN_OPS
    session = _session(proto)
    rng = np.random.default_rng(0)
    gmm = classes.samplers[0]
    cumulative = np.cumsum(gmm.weights.astype(np.float32))
    edges = np.concatenate([[0.0, np.nextafter(np.float32(1), np.float32(0))], cumulative,
                            np.nextafter(cumulative, np.float32(0)), np.nextafter(cumulative, np.float32(2))])
    n = 300
    u = np.concatenate([edges, rng.uniform(size=n - len(edges))]).astype(np.float32)
    eps = rng.standard_normal((n, D)).astype(np.float32)
    labels = (np.arange(n) % K).astype(np.int32)
    labels[:len(edges)] = 0  # the edges go to the mixture
    z = run_sampler_onnx(session, eps, u, labels)
    result = compare_latents(classes.latents(eps, u, labels), z, classes.latent_tolerance(eps, u, labels))
    assert result["passed"], result
    assert set(gmm.components(u[labels == 0])) == {0, 1, 2}
    # eps = 0: each row is its class's chosen component mean, exactly
    z0 = run_sampler_onnx(session, np.zeros_like(eps), u, labels)
    for c, sampler in enumerate(classes.samplers):
        rows = labels == c
        np.testing.assert_array_equal(z0[rows], sampler.means.astype(np.float32)[sampler.components(u[rows])])
    # one seed and label: the latents of that class's sampler alone
    eps, u = portable_noise(7, 16, D)
    for c in range(K):
        got = run_sampler_onnx(session, eps, u, np.full(16, c, np.int32))
        np.testing.assert_allclose(got, classes.samplers[c].sample(16, 7), atol=float(
            classes.latent_tolerance(eps, u, np.full(16, c)).max()), rtol=0)


def test_class_table_refuses_bad_labels():
    classes = _classes()
    for bad, match in ((3, r"in \[0, 3\)"), (-1, r"in \[0, 3\)"), ([0, 1], "one per sample"), (1.0, "integer")):
        with pytest.raises(DataError, match=match):
            classes.sample(4, 0, bad)


def test_unconditional_decoder_refuses_a_label(decoder_dir):
    from keras_vae.serving.onnx_decoder import OnnxDecoder

    decoder = OnnxDecoder(decoder_dir)
    assert decoder.num_classes == 0
    with pytest.raises(DataError, match="not class-conditional"):
        decoder.decode(np.zeros((1, decoder.latent_dim), np.float32), label=0)
    with pytest.raises(DataError, match="not class-conditional"):
        decoder.sample(2, seed=0, label=1)


# --------------------------------------------------------------------------------- the session's export
@pytest.mark.slow
def test_export_json_states_the_conditional_contract(conditional_export):
    out = conditional_export / "export"
    report = json.loads((out / contract.EXPORT_JSON).read_text())
    assert report["model"]["num_classes"] == K
    conditional = report["conditional"]
    assert conditional["num_classes"] == K and conditional["label_input"] == contract.LABEL_INPUT
    assert conditional["label_dtype"] == "int32" and conditional["label_range"] == [0, K]
    sources = conditional["class_samplers"]
    assert sources["0"].startswith("gmm, 3") and sources["1"].startswith("gaussian, 1")
    assert sources["2"].startswith("prior") and "lacks the class" in sources["2"]
    assert report["attributes"]["file"] is None and "class-conditional" in report["attributes"]["reason"]
    # every signature takes the label: int32 [N] beside z or the image, an int32 scalar beside n and seed
    signatures = report["savedmodel"]["signatures"]
    for name in contract.SIGNATURES:
        assert signatures[name]["inputs"][contract.LABEL_INPUT] == {"dtype": "int32", "shape": [None]}, name
    for name in contract.SAMPLE_SIGNATURES:
        assert set(signatures[name]["inputs"]) == {"n", "seed", "label"}
        assert signatures[name]["inputs"]["label"] == {"dtype": "int32", "shape": []}
    # every ONNX file takes it too, and names the class count in its metadata
    for name, entry in report["onnx"].items():
        assert entry["inputs"][contract.LABEL_INPUT] == LABEL, name
        assert entry["metadata"][contract.META_NUM_CLASSES] == str(K), name
    assert set(report["onnx"]) == {"decoder.onnx", "encoder.onnx", "sampler.onnx", "decoder.float16.onnx",
                                   "decoder.int8.onnx"}
    assert report["onnx"]["sampler.onnx"]["metadata"][contract.META_SAMPLER_KIND] == contract.SAMPLER_KIND_CLASSES
    # the exporter's own checks passed with labels: parity of every signature and of the class sampler
    assert report["parity"]["passed"]
    assert report["parity"]["sampler"]["labels"] == [0, 1, 2, 0, 1, 2]
    assert max(report["parity"]["sampler"]["max_diff_over_bound"].values()) <= 1
    for variant in report["variants"].values():
        assert np.isfinite(variant["max_abs_error"])
    # class_samplers.json: the run's classes.json, with N(0, I) for class 2, listed and hashed
    exported = json.loads((out / contract.CLASS_SAMPLERS_JSON).read_text())
    stored = json.loads((conditional_export / "run" / "samplers" / "classes.json").read_text())
    assert exported["classes"]["0"] == stored["classes"]["0"] and exported["classes"]["1"] == stored["classes"]["1"]
    assert exported["classes"]["2"]["kind"] == "prior"
    assert contract.CLASS_SAMPLERS_JSON in report["files"]


@pytest.mark.slow
def test_savedmodel_refuses_bad_labels_with_one_line(conditional_export):
    import tensorflow as tf

    loaded = tf.saved_model.load(str(conditional_export / "export" / "savedmodel" / "vae" / "1"))
    z = tf.zeros([2, D])
    for label, match in (([0, 3], "decode: label must be < 3"), ([-1, 0], "decode: label must be >= 0"),
                         ([0], "one entry per row")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=match):
            loaded.signatures["serving_default"](z=z, label=tf.constant(label, tf.int32))
    with pytest.raises(tf.errors.InvalidArgumentError, match="sample: label must be < 3"):
        loaded.signatures["sample"](n=tf.constant(2), seed=tf.constant(0, tf.int64), label=tf.constant(3))


@pytest.mark.slow
def test_onnx_decoder_checks_labels_and_files(conditional_export, tmp_path):
    import shutil

    from keras_vae.serving.onnx_decoder import OnnxDecoder

    out = conditional_export / "export"
    decoder = OnnxDecoder(out)
    assert decoder.num_classes == K and decoder.sampler_kind == contract.SAMPLER_KIND_CLASSES
    z = np.zeros((2, D), np.float32)
    for kwargs, match in (({}, "class-conditional .3 classes.: pass label"), ({"label": 3}, "label 3 is out of range"),
                          ({"label": [0, 1, 2]}, "one per row"), ({"label": 0.5}, "one integer")):
        with pytest.raises(DataError, match=match):
            decoder.decode(z, **kwargs)
    with pytest.raises(DataError, match="pass label"):
        decoder.sample(2, seed=0)
    # one label or one per row; the float16 and int8 decoders take it too
    np.testing.assert_array_equal(decoder.decode(z, label=1), decoder.decode(z, label=[1, 1]))
    assert not np.array_equal(decoder.decode(z, label=[0, 2])[1], decoder.decode(z, label=[0, 1])[1])
    for variant in (contract.DECODER_FLOAT16_ONNX, contract.DECODER_QUANTIZED_ONNX):
        assert OnnxDecoder(out / variant, sampler=False).decode(z, label=[0, 2]).shape == (2, 28, 28, 1)
    # the encoder is q(z|x, y): it takes the label too
    from keras_vae.serving.onnx_encoder import OnnxEncoder

    encoder = OnnxEncoder(out)
    images = decoder.decode(z, label=[0, 2])
    assert encoder.num_classes == K and encoder.encode(images, label=[0, 2])[0].shape == (2, D)
    with pytest.raises(DataError, match="pass label"):
        encoder.encode(images)
    # a changed class_samplers.json is refused (listed and hashed in export.json)
    copy = tmp_path / "exp"
    shutil.copytree(out, copy)
    data = json.loads((copy / contract.CLASS_SAMPLERS_JSON).read_text())
    data["classes"]["1"]["means"][0][0] += 1.0
    (copy / contract.CLASS_SAMPLERS_JSON).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="class_samplers.json does not match export.json"):
        OnnxDecoder(copy)


@pytest.mark.slow
def test_unconditional_export_is_unchanged(vae_export):
    report = vae_export.report
    assert "conditional" not in report and "num_classes" not in report["model"]
    for name, entry in report["onnx"].items():
        assert contract.LABEL_INPUT not in entry["inputs"] and contract.META_NUM_CLASSES not in entry["metadata"]
    for name, entry in report["savedmodel"]["signatures"].items():
        assert contract.LABEL_INPUT not in entry["inputs"], name
    assert not (vae_export.out / contract.CLASS_SAMPLERS_JSON).exists()
