"""The sampler travels with the export: one seed gives the same latents in the run folder
(``LatentSampler.sample``), the SavedModel ``sample`` signature, ``OnnxDecoder``, the Node package and the
browser explorer; ``keras-vae sample RUN`` and ``keras-vae sample EXPORT`` draw the same grid.

The run is the session's tiny MLP VAE ``vae_run`` (latent 4) with a hand-made 3-component GMM sampler.json,
so that every runtime must get the component choice (u vs the cumulative weights), the means and the
full Cholesky factors right. Latents are compared with ``keras_vae.export.sampler_onnx.latent_tolerance``: the
float32 round-off of the drawing rule plus one float32 ulp of noise, elementwise.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from PIL import Image

from keras_vae.export import contract
from keras_vae.export.sampler_onnx import latent_tolerance
from keras_vae.errors import ArtifactError
from keras_vae.sampling.noise import NOISE_ALGORITHM, portable_noise
from keras_vae.sampling.samplers import LatentSampler
from keras_vae.serving.onnx_decoder import OnnxDecoder
from tests.support.tools import NODE_DIR, REPO_ROOT, drive_explorer, require_tool

SEED, N = 7, 16  # the explorer's grid holds 16 codes
D = 4
PLAIN_OPS = {"Unsqueeze", "LessOrEqual", "Cast", "ReduceSum", "Min", "Gather", "MatMul", "Squeeze", "Add"}


# ``gmm_export`` (tests/conftest.py): the tiny VAE with a hand-made 3-component GMM sampler.json, exported


def _reference(sampler, n=N, seed=SEED):
    """(z, tolerance): the run folder's latents and the bound every runtime must meet."""
    eps, u = portable_noise(seed, n, D)
    return sampler.sample(n, seed), latent_tolerance(sampler, eps, u)


def _assert_close(name, got, reference, tolerance):
    got = np.asarray(got, np.float32)
    assert got.shape == reference.shape, (name, got.shape)
    diff = np.abs(got.astype(np.float64) - reference)
    print(f"{name} vs run folder latents: max abs diff {diff.max():.3g} (bound {tolerance.max():.3g})")
    assert np.all(diff <= tolerance), (name, float(diff.max()))


# -------------------------------------------------------------------------------- what is exported
def test_export_carries_the_sampler(gmm_export):
    run, out, sampler, report = gmm_export
    exported = LatentSampler.load(out / contract.SAMPLER_JSON, latent_dim=D)
    assert exported.kind == "gmm"
    for name in ("weights", "means", "scale_tril"):
        np.testing.assert_array_equal(getattr(exported, name), getattr(sampler, name))
    asset = out / report["sampler"]["savedmodel_asset"]
    assert asset == out / "savedmodel" / "vae" / "1" / contract.SAMPLER_ASSET
    assert asset.read_bytes() == (out / contract.SAMPLER_JSON).read_bytes()
    assert report["sampler"] == {"kind": "gmm", "components": 3, "source": "run folder sampler.json",
                                 "file": "sampler.json", "onnx": "sampler.onnx",
                                 "savedmodel_asset": "savedmodel/vae/1/assets.extra/sampler.json",
                                 "signatures": ["sample", "sample_uint8"], "noise": NOISE_ALGORITHM}
    import hashlib

    for name in (contract.SAMPLER_ONNX, contract.SAMPLER_JSON, report["sampler"]["savedmodel_asset"]):
        assert report["files"][name]["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest(), name
    parity = report["parity"]["sampler"]
    assert parity["passed"] and parity["seeds"] == [0, 1] and parity["batch_sizes"] == [1, 7, 64]
    assert max(parity["max_diff_over_bound"].values()) <= 1
    assert set(report["savedmodel"]["signatures"]) >= {"sample", "sample_uint8"}
    sig = report["savedmodel"]["signatures"]["sample_uint8"]
    assert sig["inputs"] == {"n": {"dtype": "int32", "shape": []}, "seed": {"dtype": "int64", "shape": []}}
    assert sig["outputs"]["image"] == {"dtype": "uint8", "shape": [None, 28, 28, 1]}
    assert sig["outputs"]["z"] == {"dtype": "float32", "shape": [None, D]}


def test_sampler_onnx_is_plain_and_matches_the_drawing_rule(gmm_export):
    import onnxruntime as ort

    _, out, sampler, report = gmm_export
    proto = onnx.load(str(out / contract.SAMPLER_ONNX))
    onnx.checker.check_model(proto, full_check=True)
    assert {node.op_type for node in proto.graph.node} <= PLAIN_OPS
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta[contract.META_ROLE] == "sampler" and meta[contract.META_SAMPLER_KIND] == "gmm"
    assert meta[contract.META_NOISE] == NOISE_ALGORITHM and meta[contract.META_LATENT_DIM] == str(D)
    assert report["onnx"]["sampler.onnx"]["inputs"] == {"eps": {"dtype": "float32", "shape": ["N", D]},
                                                        "u": {"dtype": "float32", "shape": ["N"]}}
    session = ort.InferenceSession(str(out / contract.SAMPLER_ONNX), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    eps = rng.standard_normal((500, D)).astype(np.float32)
    cumulative = np.cumsum(sampler.weights.astype(np.float32))
    # u on both sides of, and exactly at, each cumulative weight; 0 and the largest float32 below 1
    edges = np.concatenate([[0.0, np.nextafter(np.float32(1), np.float32(0))],
                            cumulative, np.nextafter(cumulative, np.float32(0)), np.nextafter(cumulative, np.float32(2))])
    u = np.concatenate([edges, rng.uniform(size=500 - len(edges))]).astype(np.float32)
    z = session.run(["z"], {"eps": eps, "u": u})[0]
    k = sampler.components(u)
    assert set(k) == {0, 1, 2}
    np.testing.assert_array_equal(k[2:5], [1, 2, 2])  # u == cum_k goes to k + 1 (side='right'), clipped
    _assert_close("sampler.onnx (random noise)", z, sampler.latents(eps, u).astype(np.float64),
                  latent_tolerance(sampler, eps, u))
    # eps = 0 gives each component's mean exactly
    z0 = session.run(["z"], {"eps": np.zeros((500, D), np.float32), "u": u})[0]
    np.testing.assert_array_equal(z0, sampler.means.astype(np.float32)[k])


# ------------------------------------------------------------------------ one seed, every runtime
def test_savedmodel_sample_signature(gmm_export):
    import tensorflow as tf

    from keras_vae.runs.folder import load_model

    run, out, sampler, _ = gmm_export
    loaded = tf.saved_model.load(str(out / "savedmodel" / "vae" / "1"))
    reference, tolerance = _reference(sampler)
    result = loaded.signatures["sample"](n=tf.constant(N, tf.int32), seed=tf.constant(SEED, tf.int64))
    _assert_close("SavedModel sample", result["z"].numpy(), reference, tolerance)
    model = load_model(run / "model.keras")
    expected = model.to_unit(model.decode(tf.constant(reference.astype(np.float32)))).numpy()
    np.testing.assert_allclose(result["image"].numpy(), expected, atol=contract.PARITY_TOLERANCE, rtol=0)
    as_uint8 = loaded.signatures["sample_uint8"](n=tf.constant(N, tf.int32), seed=tf.constant(SEED, tf.int64))
    assert as_uint8["image"].dtype == tf.uint8
    assert np.abs(as_uint8["image"].numpy().astype(int) - np.floor(expected * 255 + 0.5)).max() <= 1
    for n, seed, match in ((0, 0, "n must be >= 1"), (2, -1, "seed must be >= 0"), (2, 2**32, "seed must be < 2")):
        with pytest.raises(tf.errors.InvalidArgumentError, match=match):
            loaded.signatures["sample"](n=tf.constant(n, tf.int32), seed=tf.constant(seed, tf.int64))


def test_rest_columnar_sample_request(gmm_export):
    """TF Serving's REST columnar format carries the scalar inputs: {"inputs": {"n": 16, "seed": 7}}."""
    import urllib.request

    from keras_vae.serving.contract_server import ContractServer

    _, out, sampler, _ = gmm_export
    body = json.dumps({"signature_name": "sample_uint8", "inputs": {"n": N, "seed": SEED}}).encode()
    with ContractServer({"vae": out / "savedmodel" / "vae"}) as server:
        request = urllib.request.Request(f"{server.url}/v1/models/vae:predict", body, method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            outputs = json.loads(response.read())["outputs"]
    reference, tolerance = _reference(sampler)
    _assert_close("REST sample_uint8", outputs["z"], reference, tolerance)
    assert np.asarray(outputs["image"]).shape == (N, 28, 28, 1)


def test_onnx_decoder_samples_the_exported_sampler(gmm_export):
    _, out, sampler, _ = gmm_export
    dec = OnnxDecoder(out)
    assert dec.sampler_kind == "gmm" and dec.sampler_path == out / contract.SAMPLER_ONNX and dec.verified
    reference, tolerance = _reference(sampler)
    _assert_close("OnnxDecoder", dec.sample_latents(N, SEED), reference, tolerance)
    np.testing.assert_array_equal(dec.sample(N, SEED), dec.decode(dec.sample_latents(N, SEED)))
    # a longer draw starts with the same codes; temperature 0 gives the chosen components' means
    np.testing.assert_array_equal(dec.sample_latents(64, SEED)[:N], dec.sample_latents(N, SEED))
    k = sampler.components(portable_noise(SEED, N, D)[1])
    np.testing.assert_array_equal(dec.sample_latents(N, SEED, temperature=0.0), sampler.means.astype(np.float32)[k])
    # sampler=False: the prior, z = eps
    np.testing.assert_array_equal(OnnxDecoder(out, sampler=False).sample_latents(N, SEED), portable_noise(SEED, N, D)[0])


def test_onnx_decoder_refuses_a_wrong_or_changed_sampler(gmm_export, tmp_path):
    _, out, _, _ = gmm_export
    with pytest.raises(ArtifactError, match="is not a keras-vae sampler"):
        OnnxDecoder(out, sampler=out / contract.DECODER_ONNX)
    copy = tmp_path / "exp"
    shutil.copytree(out, copy)
    proto = onnx.load(str(copy / contract.SAMPLER_ONNX))
    proto.graph.initializer[1].raw_data = bytes(len(proto.graph.initializer[1].raw_data))  # zero the means
    onnx.save(proto, str(copy / contract.SAMPLER_ONNX))
    with pytest.raises(ArtifactError, match="sampler.onnx does not match export.json"):
        OnnxDecoder(copy)


@pytest.mark.slow
def test_node_samples_the_exported_sampler(gmm_export, tmp_path):
    require_tool(shutil.which("node") is not None, "node is not installed (apt-get install nodejs)")
    require_tool((NODE_DIR / "node_modules" / "onnxruntime-node").is_dir(),
                 f"{NODE_DIR}/node_modules is missing: run serving/install_test_deps.sh")
    _, out, sampler, _ = gmm_export
    cmd = ["node", str(NODE_DIR / "decode.js"), "--model", str(out / contract.DECODER_ONNX), "--sample", str(N),
           "--seed", str(SEED), "--out-dir", str(tmp_path / "png"), "--latents-out", str(tmp_path / "z.json"),
           "--float-out", str(tmp_path / "images.bin")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["sampler"] == str(out / contract.SAMPLER_ONNX) and summary["seed"] == SEED
    reference, tolerance = _reference(sampler)
    node_z = np.asarray(json.loads((tmp_path / "z.json").read_text()), np.float32)
    _assert_close("Node (onnxruntime-node)", node_z, reference, tolerance)
    images = np.fromfile(tmp_path / "images.bin", "<f4").reshape(N, 28, 28, 1)
    assert np.abs(images - OnnxDecoder(out).sample(N, SEED)).max() <= 1e-5
    # --sampler prior: z = the portable noise itself
    proc = subprocess.run(cmd[:-2] + ["--sampler", "prior"], capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    eps = portable_noise(SEED, N, D)[0]
    prior_z = np.asarray(json.loads((tmp_path / "z.json").read_text()), np.float32)
    assert np.all(np.abs(prior_z - eps) <= np.spacing(np.abs(eps)))
    bad = subprocess.run(cmd[:6] + ["--seed", "-3", "--out-dir", str(tmp_path / "x")], capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2 and "--seed must be an integer >= 0" in bad.stderr


@pytest.mark.slow
def test_browser_new_sample_draws_from_the_exported_sampler(gmm_export, tmp_path):
    _, out, sampler, _ = gmm_export
    report = drive_explorer(out, f"seed={SEED}&n={N}", "--interact")
    assert report["sampler"] == "sampler.onnx"
    first, after = report["last_sample"], report["interact"]["last_sample"]
    assert first["seed"] == SEED and after["seed"] == SEED + 1  # "New sample" draws the next seed
    for sample in (first, after):
        reference, tolerance = _reference(sampler, seed=sample["seed"])
        _assert_close(f"browser seed {sample['seed']}", sample["z"], reference, tolerance)


@pytest.mark.slow
def test_cli_sample_run_and_export_draw_the_same_grid(gmm_export, tmp_path):
    run, out, _, _ = gmm_export
    calls = {"run": (run,), "export": (out,), "onnx": (out / contract.DECODER_ONNX,),
             "run-prior": (run, "--sampler", "prior"), "export-prior": (out, "--sampler", "prior")}
    # independent processes, started at once (two load TensorFlow, the export ones only onnxruntime)
    procs = {key: subprocess.Popen([sys.executable, "-m", "keras_vae", "sample", str(source), "--n", "9", "--seed", "3",
                                    *flags, "--out", str(tmp_path / f"{key}.png")], cwd=REPO_ROOT,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for key, (source, *flags) in calls.items()}
    refused = subprocess.Popen([sys.executable, "-m", "keras_vae", "sample", str(out), "--sampler", "gaussian",
                                "--out", str(tmp_path / "x.png")], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    grids = {}
    try:
        for key, proc in procs.items():
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-2000:]
            grids[key] = np.asarray(Image.open(tmp_path / f"{key}.png")).astype(int)
        _, err = refused.communicate(timeout=120)
    finally:
        for proc in (*procs.values(), refused):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    # same latents; Keras vs onnxruntime decoders agree within PARITY_TOLERANCE -> at most one grey level
    assert np.abs(grids["run"] - grids["export"]).max() <= 1
    np.testing.assert_array_equal(grids["export"], grids["onnx"])
    assert grids["run"].std() > 0
    # --sampler prior on both sides: the same prior grid, different from the mixture's
    assert np.abs(grids["run-prior"] - grids["export-prior"]).max() <= 1
    assert np.abs(grids["export-prior"] - grids["export"]).max() > 1
    assert refused.returncode == 2 and "this export carries a 'gmm' sampler" in err


# ------------------------------------------------------------------ the flow sampler, every runtime
FLOW_OPS = PLAIN_OPS | {"Relu", "Slice", "Div", "Tanh", "Mul", "Exp", "Concat"}


@pytest.fixture(scope="module")
def flow_export(vae_run, tmp_path_factory):
    """(run_dir, export_dir, sampler, report): ``vae_run`` with a hand-made RealNVP ``flow`` sampler.json
    (4 couplings with random weights that bend the draws of the 3-component base mixture), exported."""
    from keras_vae.export.exporter import export_run
    from tests.support.decoders import hand_made_flow_sampler

    run = tmp_path_factory.mktemp("run-flow") / "run-flow"
    shutil.copytree(vae_run, run)
    sampler = hand_made_flow_sampler(d=D)
    sampler.save(run / contract.SAMPLER_JSON)
    out = tmp_path_factory.mktemp("export-flow") / "exp"
    report = export_run(run, out)
    yield run, out, sampler, report


def test_flow_export_is_plain_onnx_and_passes_the_exporter_parity(flow_export):
    import onnxruntime as ort

    from keras_vae.sampling.samplers import FlowSampler

    _, out, sampler, report = flow_export
    assert report["sampler"]["kind"] == "flow" and report["sampler"]["components"] == 3
    parity = report["parity"]["sampler"]
    assert parity["passed"] and max(parity["max_diff_over_bound"].values()) <= 1
    exported = LatentSampler.load(out / contract.SAMPLER_JSON, latent_dim=D)
    assert isinstance(exported, FlowSampler)
    proto = onnx.load(str(out / contract.SAMPLER_ONNX))
    onnx.checker.check_model(proto, full_check=True)
    assert {node.op_type for node in proto.graph.node} <= FLOW_OPS
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta[contract.META_SAMPLER_KIND] == "flow" and meta[contract.META_NOISE] == NOISE_ALGORITHM
    assert report["onnx"]["sampler.onnx"]["inputs"] == {"eps": {"dtype": "float32", "shape": ["N", D]},
                                                        "u": {"dtype": "float32", "shape": ["N"]}}
    session = ort.InferenceSession(str(out / contract.SAMPLER_ONNX), providers=["CPUExecutionProvider"])
    eps = (np.random.default_rng(0).standard_normal((500, D)) * 1.5).astype(np.float32)
    u = np.random.default_rng(1).uniform(size=500).astype(np.float32)
    _assert_close("flow sampler.onnx (random noise)", session.run(["z"], {"eps": eps, "u": u})[0],
                  sampler.latents(eps, u).astype(np.float64), latent_tolerance(sampler, eps, u))


def test_flow_savedmodel_and_onnx_decoder_draw_the_run_folder_latents(flow_export):
    import tensorflow as tf

    _, out, sampler, _ = flow_export
    reference, tolerance = _reference(sampler)
    loaded = tf.saved_model.load(str(out / "savedmodel" / "vae" / "1"))
    result = loaded.signatures["sample"](n=tf.constant(N, tf.int32), seed=tf.constant(SEED, tf.int64))
    _assert_close("flow SavedModel sample", result["z"].numpy(), reference, tolerance)
    dec = OnnxDecoder(out)
    assert dec.sampler_kind == "flow"
    _assert_close("flow OnnxDecoder", dec.sample_latents(N, SEED), reference, tolerance)
    np.testing.assert_array_equal(dec.sample(N, SEED), dec.decode(dec.sample_latents(N, SEED)))
    # temperature scales the noise before the flow: temperature 0 maps each chosen component's mean
    eps0, u = np.zeros((N, D), np.float32), portable_noise(SEED, N, D)[1]
    _assert_close("flow OnnxDecoder at temperature 0", dec.sample_latents(N, SEED, temperature=0.0),
                  sampler.latents(eps0, u).astype(np.float64), latent_tolerance(sampler, eps0, u))


@pytest.mark.slow
def test_node_and_browser_sample_the_exported_flow(flow_export, tmp_path):
    """The Node decoder and the browser explorer feed the portable noise to the flow's sampler.onnx unchanged."""
    require_tool(shutil.which("node") is not None, "node is not installed (apt-get install nodejs)")
    require_tool((NODE_DIR / "node_modules" / "onnxruntime-node").is_dir(),
                 f"{NODE_DIR}/node_modules is missing: run serving/install_test_deps.sh")
    _, out, sampler, _ = flow_export
    cmd = ["node", str(NODE_DIR / "decode.js"), "--model", str(out / contract.DECODER_ONNX), "--sample", str(N),
           "--seed", str(SEED), "--out-dir", str(tmp_path / "png"), "--latents-out", str(tmp_path / "z.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    reference, tolerance = _reference(sampler)
    _assert_close("flow Node (onnxruntime-node)", json.loads((tmp_path / "z.json").read_text()), reference, tolerance)
    report = drive_explorer(out, f"seed={SEED}&n={N}")
    assert report["sampler"] == "sampler.onnx" and report["last_sample"]["seed"] == SEED
    _assert_close("flow browser (onnxruntime-web)", report["last_sample"]["z"], reference, tolerance)
