"""Round-trips: export a trained run, reload every artifact independently, compare with Keras."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import keras_vae
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from keras_vae.export import contract
from keras_vae.export.exporter import export_run
from keras_vae.runs.folder import load_model
from tests.support.runs import make_test_run

SAVED_MODEL_CLI = Path(sys.executable).parent / "saved_model_cli"


KEYS = ["mlp", pytest.param("conv", marks=pytest.mark.slow)]  # the conv VAE is trained and exported here


class _Exports(dict):
    """{kind: (run_dir, export_dir, report)}, each made on first use."""

    def __init__(self, makers):
        super().__init__()
        self.makers = makers

    def __missing__(self, key):
        self[key] = self.makers[key]()
        return self[key]


@pytest.fixture(scope="module")
def exports(vae_export, tmp_path_factory):
    """'mlp': the session's MLP export (with the float16 and int8 decoders); 'conv': a small conv VAE (two
    strided convolutions, kernel 3 stride 2 transposed convolutions) trained and exported here."""
    def conv():
        conv_run = make_test_run(tmp_path_factory.mktemp("run-conv"), "mnist-conv", conv_filters=(4, 8),
                                 hidden_units=(16,), latent_dim=4)
        export_dir = tmp_path_factory.mktemp("export-conv") / "exp"
        return conv_run, export_dir, export_run(conv_run, export_dir)

    return _Exports({"mlp": lambda: (vae_export.run, vae_export.out, vae_export.report), "conv": conv})


def _unit_range_reference(model, z=None, images=None):
    """Reference outputs computed by hand from the Keras model: the range scaling written out here."""
    import tensorflow as tf

    low, high = model.value_range
    if z is not None:
        return (model.decode(tf.constant(z)).numpy() - low) / (high - low)
    mean, log_var = model.encode(tf.constant(images * (high - low) + low))
    return mean.numpy(), log_var.numpy()


@pytest.mark.parametrize("key", KEYS)
def test_layout_and_manifest(exports, key):
    run, export_dir, report = exports[key]
    version_dir = export_dir / "savedmodel" / "vae" / "1"
    for rel in ("saved_model.pb", "variables/variables.index", contract.WARMUP_FILE):
        assert (version_dir / rel).is_file(), rel
    for name in (contract.DECODER_ONNX, contract.ENCODER_ONNX, contract.EXPORT_JSON):
        assert (export_dir / name).is_file(), name
    assert not [p.name for p in export_dir.iterdir() if p.name.startswith(".")], "temporary files left behind"
    on_disk = json.loads((export_dir / contract.EXPORT_JSON).read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert on_disk["savedmodel"]["path"] == "savedmodel/vae/1"
    assert on_disk["model"] == {"kind": "vae", "latent_dim": 4, "image_shape": [28, 28, 1],
                                "value_range": [0, 1], "internal_value_range": [0.0, 1.0]}
    assert on_disk["source"]["model_sha256"] == hashlib.sha256((run / "model.keras").read_bytes()).hexdigest()
    # every listed file exists with the recorded hash and size, and every artifact file is listed
    for rel, entry in on_disk["files"].items():
        data = (export_dir / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"], rel
    listed = {p.relative_to(export_dir).as_posix() for p in export_dir.rglob("*")
              if p.is_file() and p.name != contract.EXPORT_JSON}
    assert listed == set(on_disk["files"])


@pytest.mark.parametrize("key", KEYS)
def test_parity_report(exports, key):
    parity = exports[key][2]["parity"]
    assert parity["passed"] and parity["batch_sizes"] == [1, 7, 64]
    assert set(parity["signatures"]) == set(contract.SIGNATURES)
    for name, entry in parity["signatures"].items():
        assert set(entry["savedmodel"]) == {"1", "7", "64"}
        assert max(entry["savedmodel"].values()) <= entry["tolerance"]
    for name in ("serving_default", "encode"):
        onnx_diffs = parity["signatures"][name]["onnx"]
        assert set(onnx_diffs) == {"1", "7", "64"} and max(onnx_diffs.values()) <= 1e-4


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("batch", [1, 5, 64])
def test_savedmodel_and_onnx_match_keras(exports, key, batch):
    import tensorflow as tf

    run, export_dir, _ = exports[key]
    model = load_model(run / "model.keras")  # an independent reload of the source model
    loaded = tf.saved_model.load(str(export_dir / "savedmodel" / "vae" / "1"))
    rng = np.random.default_rng(batch)
    z = rng.standard_normal((batch, 4)).astype(np.float32)
    images = rng.uniform(size=(batch, 28, 28, 1)).astype(np.float32)

    expected = _unit_range_reference(model, z=z)
    image = loaded.signatures["serving_default"](z=tf.constant(z))["image"].numpy()
    assert image.shape == (batch, 28, 28, 1) and image.dtype == np.float32
    np.testing.assert_allclose(image, expected, atol=1e-4, rtol=0)
    as_uint8 = loaded.signatures["decode_uint8"](z=tf.constant(z))["image"].numpy()
    assert as_uint8.dtype == np.uint8
    assert np.abs(as_uint8.astype(int) - np.round(expected * 255).astype(int)).max() <= 1

    mean, log_var = _unit_range_reference(model, images=images)
    encoded = loaded.signatures["encode"](image=tf.constant(images))
    np.testing.assert_allclose(encoded["mean"].numpy(), mean, atol=1e-4, rtol=0)
    np.testing.assert_allclose(encoded["log_variance"].numpy(), log_var, atol=1e-4, rtol=0)
    recon = loaded.signatures["reconstruct"](image=tf.constant(images))["image"].numpy()
    np.testing.assert_allclose(recon, _unit_range_reference(model, z=mean), atol=1e-4, rtol=0)

    decoder = ort.InferenceSession(str(export_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(decoder.run(["image"], {"z": z})[0], expected, atol=1e-4, rtol=0)
    encoder = ort.InferenceSession(str(export_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    onnx_mean, onnx_log_var = encoder.run(["mean", "log_variance"], {"image": images})
    np.testing.assert_allclose(onnx_mean, mean, atol=1e-4, rtol=0)
    np.testing.assert_allclose(onnx_log_var, log_var, atol=1e-4, rtol=0)


def _parse_saved_model_cli(text: str) -> dict:
    """{signature: {"inputs"|"outputs": {name: (dtype, shape)}}} from `saved_model_cli show --all`."""
    import re

    sigs, current, side, tensor = {}, None, None, None
    for line in text.splitlines():
        if m := re.match(r"signature_def\['(.+)'\]:", line.strip()):
            current = sigs.setdefault(m.group(1), {"inputs": {}, "outputs": {}})
        elif "following input(s)" in line:
            side = "inputs"
        elif "following output(s)" in line:
            side = "outputs"
        elif m := re.match(r"(inputs|outputs)\['(.+)'\] tensor_info:", line.strip()):
            tensor = m.group(2)
        elif m := re.match(r"dtype: (\w+)", line.strip()):
            current[side][tensor] = [m.group(1), None]
        elif m := re.match(r"shape: (.+)", line.strip()):
            current[side][tensor][1] = m.group(1)
    return sigs


@pytest.mark.slow
def test_saved_model_cli_lists_signatures(exports):
    export_dir = exports["conv"][1]
    result = subprocess.run([str(SAVED_MODEL_CLI), "show", "--all", "--dir",
                             str(export_dir / "savedmodel" / "vae" / "1")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    sigs = _parse_saved_model_cli(result.stdout)
    image = "(-1, 28, 28, 1)"
    assert sigs["serving_default"] == {"inputs": {"z": ["DT_FLOAT", "(-1, 4)"]},
                                       "outputs": {"image": ["DT_FLOAT", image]}}
    assert sigs["decode_uint8"] == {"inputs": {"z": ["DT_FLOAT", "(-1, 4)"]},
                                    "outputs": {"image": ["DT_UINT8", image]}}
    assert sigs["encode"] == {"inputs": {"image": ["DT_FLOAT", image]},
                              "outputs": {"mean": ["DT_FLOAT", "(-1, 4)"], "log_variance": ["DT_FLOAT", "(-1, 4)"]}}
    assert sigs["reconstruct"] == {"inputs": {"image": ["DT_FLOAT", image]},
                                   "outputs": {"image": ["DT_FLOAT", image]}}
    # export.json describes the same signatures
    described = exports["conv"][2]["savedmodel"]["signatures"]
    assert described["encode"]["outputs"]["mean"] == {"dtype": "float32", "shape": [None, 4]}
    assert described["decode_uint8"]["outputs"]["image"] == {"dtype": "uint8", "shape": [None, 28, 28, 1]}


@pytest.mark.slow
def test_saved_model_cli_run_decodes(exports, tmp_path):
    run, export_dir, _ = exports["mlp"]
    z = np.random.default_rng(3).standard_normal((2, 4)).astype(np.float32)
    np.save(tmp_path / "z.npy", z)
    result = subprocess.run([str(SAVED_MODEL_CLI), "run", "--dir", str(export_dir / "savedmodel" / "vae" / "1"),
                             "--tag_set", "serve", "--signature_def", "serving_default",
                             "--inputs", f"z={tmp_path / 'z.npy'}", "--outdir", str(tmp_path / "out")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    got = np.load(tmp_path / "out" / "image.npy")
    expected = _unit_range_reference(load_model(run / "model.keras"), z=z)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("role, filename", [("decoder", "decoder.onnx"), ("encoder", "encoder.onnx")])
def test_onnx_metadata_names_and_batch_axis(exports, role, filename):
    run, export_dir, report = exports["mlp"]
    proto = onnx.load(str(export_dir / filename))
    onnx.checker.check_model(proto, full_check=True)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta[contract.META_LATENT_DIM] == "4"
    assert json.loads(meta[contract.META_IMAGE_SHAPE]) == [28, 28, 1]
    assert json.loads(meta[contract.META_VALUE_RANGE]) == [0, 1]
    assert meta[contract.META_MODEL_KIND] == "vae"
    assert meta[contract.META_PACKAGE_VERSION] == keras_vae.__version__
    assert meta[contract.META_SOURCE_RUN] == run.resolve().name  # the folder's name, never a home path
    assert meta[contract.META_SOURCE_SHA256] == hashlib.sha256((run / "model.keras").read_bytes()).hexdigest()
    assert meta[contract.META_ROLE] == role
    assert meta[contract.META_PRECISION] == "float32"
    ins = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto.graph.input}
    outs = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto.graph.output}
    if role == "decoder":
        assert ins == {"z": ["N", 4]} and outs == {"image": ["N", 28, 28, 1]}
    else:
        assert ins == {"image": ["N", 28, 28, 1]} and outs == {"mean": ["N", 4], "log_variance": ["N", 4]}
    assert report["onnx"][filename]["metadata"] == meta


def test_warmup_records_cover_every_signature(exports):
    from keras_vae.export.warmup import read_warmup_requests

    _, export_dir, report = exports["mlp"]
    records = read_warmup_requests(export_dir / "savedmodel" / "vae" / "1" / contract.WARMUP_FILE)
    assert len(records) == report["savedmodel"]["warmup"]["records"] == 12
    assert {name for name, _, _ in records} == {"vae"}
    assert sorted({sig for _, sig, _ in records}) == sorted(contract.SIGNATURES + contract.SAMPLE_SIGNATURES)
    for _, sig, inputs in records:
        if sig in contract.SAMPLE_SIGNATURES:  # scalar n and seed
            assert inputs["n"].dtype == np.int32 and inputs["seed"].dtype == np.int64
            assert inputs["n"].shape == () and int(inputs["n"]) in (1, 8)
            continue
        (key, value), = inputs.items()
        assert value.dtype == np.float32
        assert key == ("z" if sig in ("serving_default", "decode_uint8") else "image")
        assert value.shape[1:] == ((4,) if key == "z" else (28, 28, 1)) and value.shape[0] in (1, 8)


U16 = 2.0 ** -11  # unit round-off of float16


def _decoder_error_bound(weights, z, precision):
    """Elementwise bound on |variant(z) - float32(z)| for the MLP decoder sigmoid(tanh(z W1 + b1) W2 + b2).

    Propagated layer by layer from the numbers the variant rounds (first order, worst case):
    - int8-dynamic: z and the hidden activations are quantized per call to uint8 over
      [min(0, min x), max(0, max x)] (error <= step / 2, step = range / 255); the weights to 7-bit
      symmetric integers (error <= max|W| / 63 / 2). A layer adds |e_in| |W| + (|x| + |e_in|) e_W.
    - float16: every input, weight and output is rounded (relative error U16), and a dot product of
      n terms adds at most n U16 sum|x||W|.
    tanh is 1-Lipschitz and sigmoid 1/4-Lipschitz; the bias is added in float.
    """
    (w1, b1), (w2, b2) = weights
    x, err = z.astype(np.float64), np.zeros(z.shape)
    for k, (w, b) in enumerate(((w1, b1), (w2, b2))):
        w = w.astype(np.float64)
        if precision == "int8-dynamic":
            lo, hi = min(0.0, (x - err).min()), max(0.0, (x + err).max())
            e_in = err + (hi - lo) / 255 / 2
            e_w = np.abs(w).max() / 63 / 2
            e_out = e_in @ np.abs(w) + (np.abs(x) + e_in) @ np.full_like(w, e_w)
        else:
            e_in = err + (np.abs(x) + err) * U16
            e_w = np.abs(w) * U16
            abs_terms = (np.abs(x) + e_in) @ (np.abs(w) + e_w)
            e_out = e_in @ np.abs(w) + (np.abs(x) + e_in) @ e_w + w.shape[0] * U16 * abs_terms
            e_out += (np.abs(x @ w + b) + e_out) * U16  # output rounding (bias add included)
        y = x @ w + b
        if k == 0:
            x, err = np.tanh(y), e_out + (U16 if precision == "float16" else 0.0)
        else:
            return e_out / 4 + (U16 if precision == "float16" else 0.0) + 1e-6  # + float32 round-off


@pytest.mark.parametrize("variant, filename, precision", [("float16", "decoder.float16.onnx", "float16"),
                                                          ("quantized", "decoder.int8.onnx", "int8-dynamic")])
def test_smaller_decoders(exports, variant, filename, precision):
    run, export_dir, report = exports["mlp"]
    info = report["variants"][variant]
    path = export_dir / filename
    assert info["file"] == filename and info["bytes"] == path.stat().st_size
    assert info["bytes"] < info["bytes_float32"] == (export_dir / "decoder.onnx").stat().st_size
    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta[contract.META_PRECISION] == precision and meta[contract.META_ROLE] == "decoder"
    if precision == "int8-dynamic":  # 7-bit weights: u8 x s8 pairs cannot saturate int16 on AVX2-only CPUs
        ints = [onnx.numpy_helper.to_array(t) for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
        assert ints and all(np.abs(a.astype(np.int32)).max() <= 64 for a in ints)
    # the error is what we measure here, on other latents, and stays within the bound derived from
    # the weights and the variant's rounding (any CPU: the bound does not depend on the kernels)
    model = load_model(run / "model.keras")
    weights = [(layer.kernel.numpy(), layer.bias.numpy()) for layer in model.decoder.layers
               if hasattr(layer, "kernel")]
    small = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    full = ort.InferenceSession(str(export_dir / "decoder.onnx"), providers=["CPUExecutionProvider"])
    z = np.random.default_rng(11).standard_normal((64, 4)).astype(np.float32)
    out = small.run(None, {"z": z})[0]
    assert out.dtype == np.float32 and out.shape == (64, 28, 28, 1)
    diff = np.abs(out - full.run(None, {"z": z})[0]).reshape(64, -1)
    bound = _decoder_error_bound(weights, z, precision)
    assert diff.max() > 0 and np.all(diff <= bound), float((diff / bound).max())
    # the reported error (keras_vae.export.quantize.measure_error: seed 0, batches 1, 7, 64) obeys the same bound
    rng = np.random.default_rng(0)
    reported_bound = max(_decoder_error_bound(weights, rng.standard_normal((n, 4)).astype(np.float32),
                                              precision).max() for n in (1, 7, 64))
    assert 0 < info["max_abs_error"] <= reported_bound


@pytest.mark.slow
def test_conv_export_writes_no_variants(exports):
    _, export_dir, report = exports["conv"]
    assert report["variants"] == {}
    assert not (export_dir / "decoder.float16.onnx").exists() and not (export_dir / "decoder.int8.onnx").exists()


@pytest.mark.slow
def test_vaegan_roundtrip(trained_vaegan_run, tmp_path):
    """The paper's model: images live in [-1, 1] inside the model; every exported interface is [0, 1]."""
    import tensorflow as tf

    out = tmp_path / "exp"
    vaegan_run = trained_vaegan_run
    report = export_run(vaegan_run, out, float16=True, quantize=True)
    assert report["model"] == {"kind": "vaegan", "latent_dim": 8, "image_shape": [16, 16, 1],
                               "value_range": [0, 1], "internal_value_range": [-1.0, 1.0]}
    assert report["parity"]["passed"] and set(report["parity"]["signatures"]) == set(contract.SIGNATURES)
    assert report["savedmodel"]["path"] == "savedmodel/vaegan/1"
    model = load_model(vaegan_run / "model.keras")
    loaded = tf.saved_model.load(str(out / "savedmodel" / "vaegan" / "1"))
    rng = np.random.default_rng(0)
    for batch in (1, 7, 64):
        z = rng.standard_normal((batch, 8)).astype(np.float32)
        images = rng.uniform(size=(batch, 16, 16, 1)).astype(np.float32)
        expected = (np.clip(model.decoder(z, training=False).numpy(), -1, 1) + 1) / 2  # by hand
        image = loaded.signatures["serving_default"](z=tf.constant(z))["image"].numpy()
        np.testing.assert_allclose(image, expected, atol=1e-4, rtol=0)
        assert image.min() >= 0 and image.max() <= 1
        as_uint8 = loaded.signatures["decode_uint8"](z=tf.constant(z))["image"].numpy()
        assert np.abs(as_uint8.astype(int) - np.round(expected * 255).astype(int)).max() <= 1
        mean, log_var = (t.numpy() for t in model.encoder(images * 2 - 1, training=False))
        encoded = loaded.signatures["encode"](image=tf.constant(images))
        np.testing.assert_allclose(encoded["mean"].numpy(), mean, atol=1e-4, rtol=0)
        np.testing.assert_allclose(encoded["log_variance"].numpy(), log_var, atol=1e-4, rtol=0)
        decoder = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(decoder.run(["image"], {"z": z})[0], expected, atol=1e-4, rtol=0)
        encoder = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(encoder.run(["mean"], {"image": images})[0], mean, atol=1e-4, rtol=0)
    for filename in ("decoder.onnx", "encoder.onnx", "decoder.float16.onnx", "decoder.int8.onnx"):
        meta = {p.key: p.value for p in onnx.load(str(out / filename)).metadata_props}
        assert meta[contract.META_MODEL_KIND] == "vaegan" and json.loads(meta[contract.META_VALUE_RANGE]) == [0, 1]
        assert json.loads(meta[contract.META_IMAGE_SHAPE]) == [16, 16, 1] and meta[contract.META_LATENT_DIM] == "8"


def test_a_run_without_sampler_exports_the_prior(exports):
    """No sampler.json in the run: sampler.json is N(0, I) and sampler.onnx returns the noise unchanged."""
    from keras_vae.sampling.noise import portable_noise
    from keras_vae.sampling.samplers import LatentSampler

    run, export_dir, report = exports["mlp"]
    assert not (run / "sampler.json").exists()
    sampler = LatentSampler.load(export_dir / contract.SAMPLER_JSON, latent_dim=4)
    assert sampler.kind == "prior" and report["sampler"]["kind"] == "prior"
    assert report["sampler"]["source"].startswith("prior N(0, I)")
    session = ort.InferenceSession(str(export_dir / contract.SAMPLER_ONNX), providers=["CPUExecutionProvider"])
    eps, u = portable_noise(0, 64, 4)
    np.testing.assert_array_equal(session.run(["z"], {"eps": eps, "u": u})[0], eps)  # 0 + I eps, exact in float32
    assert report["parity"]["sampler"]["passed"]
