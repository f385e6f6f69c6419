"""The SavedModel as TF's own tools see it (saved_model_cli), and the TF Serving warmup records."""
from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_vae.export import contract
from keras_vae.errors import ArtifactError, ConfigError
from keras_vae.serving.client import TFServingClient
from keras_vae.serving.contract_server import ContractServer, GrpcContractServer, ModelRepository
from keras_vae.serving.tfserving import WARMUP_DIR, WARMUP_FILE, read_warmup_requests, write_warmup_requests
from tests.support.tfserving import TEST_IMAGE_SHAPE, TEST_LATENT_DIM, TEST_MODEL_NAME, call_direct

H, W, C = TEST_IMAGE_SHAPE
L = TEST_LATENT_DIM
EXPECTED = {  # signature -> (inputs, outputs) as {name: (dtype, shape)}
    "serving_default": ({"z": ("DT_FLOAT", (-1, L))}, {"image": ("DT_FLOAT", (-1, H, W, C))}),
    "decode_uint8": ({"z": ("DT_FLOAT", (-1, L))}, {"image": ("DT_UINT8", (-1, H, W, C))}),
    "encode": ({"image": ("DT_FLOAT", (-1, H, W, C))},
               {"mean": ("DT_FLOAT", (-1, L)), "log_variance": ("DT_FLOAT", (-1, L))}),
    "reconstruct": ({"image": ("DT_FLOAT", (-1, H, W, C))}, {"image": ("DT_FLOAT", (-1, H, W, C))}),
}


def saved_model_cli():
    exe = Path(sys.executable).with_name("saved_model_cli")
    if not exe.exists():
        found = shutil.which("saved_model_cli")
        if not found:
            pytest.skip("saved_model_cli (ships with tensorflow) not found next to python or on PATH")
        exe = Path(found)
    return str(exe)


@pytest.fixture(scope="module")
def export_dir(tfs_export):
    return tfs_export


@pytest.fixture(scope="module")
def version_dir(export_dir):
    return export_dir / contract.SAVEDMODEL_DIR / TEST_MODEL_NAME / "1"


@pytest.fixture(scope="module")
def cli_runs(version_dir, tmp_path_factory):
    """Start `saved_model_cli show --all` and two `run`s at once (each pays TF's import time)."""
    tmp = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(3)
    z = rng.standard_normal((5, L)).astype(np.float32)
    images = rng.random((3, H, W, C)).astype(np.float32)
    np.save(tmp / "z.npy", z)
    np.save(tmp / "images.npy", images)
    exe = saved_model_cli()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    base = [exe]
    cmds = {
        "show": base + ["show", "--dir", str(version_dir), "--all"],
        "decode_uint8": base + ["run", "--dir", str(version_dir), "--tag_set", "serve", "--signature_def",
                                "decode_uint8", "--inputs", f"z={tmp / 'z.npy'}", "--outdir", str(tmp / "d")],
        "encode": base + ["run", "--dir", str(version_dir), "--tag_set", "serve", "--signature_def",
                          "encode", "--inputs", f"image={tmp / 'images.npy'}", "--outdir", str(tmp / "e")],
    }
    procs = {k: subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for k, c in cmds.items()}
    results = {}
    for k, p in procs.items():
        try:
            out, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        results[k] = (p.returncode, out, err)
    return {"results": results, "tmp": tmp, "z": z, "images": images}


def parse_show_all(text: str) -> dict:
    """`saved_model_cli show --all` -> {signature: {"inputs"|"outputs": {name: (dtype, shape)}}}."""
    sigs = {}
    for block in re.split(r"\n(?=signature_def\[')", text):
        m = re.match(r"signature_def\['([^']+)'\]:", block)
        if not m:
            continue
        inputs_part, _, outputs_part = block.partition("contains the following output(s):")
        entry = {}
        for key, part in (("inputs", inputs_part), ("outputs", outputs_part)):
            entry[key] = {}
            for name, dtype, shape in re.findall(
                    r"\w+\['([^']+)'\] tensor_info:\s+dtype: (\w+)\s+shape: ([^\n]+)", part):
                shape = tuple(int(d) for d in re.findall(r"-?\d+", shape)) if shape.startswith("(") else None
                entry[key][name] = (dtype, shape)
        sigs[m.group(1)] = entry
    return sigs


@pytest.mark.slow
def test_saved_model_cli_show_lists_every_signature(cli_runs):
    rc, out, err = cli_runs["results"]["show"]
    assert rc == 0, err[-2000:]
    sigs = parse_show_all(out)
    sigs.pop("__saved_model_init_op", None)
    assert sorted(sigs) == sorted(EXPECTED)
    for name, (inputs, outputs) in EXPECTED.items():
        assert sigs[name]["inputs"] == inputs, name
        assert sigs[name]["outputs"] == outputs, name
    assert "Method name is: tensorflow/serving/predict" in out


@pytest.mark.slow
def test_saved_model_cli_run_decode_uint8(cli_runs, tfs_loaded):
    rc, out, err = cli_runs["results"]["decode_uint8"]
    assert rc == 0, err[-2000:]
    got = np.load(cli_runs["tmp"] / "d" / "image.npy")
    want = call_direct(tfs_loaded[1], "decode_uint8", z=cli_runs["z"])["image"]
    assert got.dtype == np.uint8 and got.shape == (5, H, W, C)
    assert np.array_equal(got, want)
    assert got.max() > got.min(), "a constant image would hide a broken decoder"


@pytest.mark.slow
def test_saved_model_cli_run_encode(cli_runs, tfs_loaded):
    rc, out, err = cli_runs["results"]["encode"]
    assert rc == 0, err[-2000:]
    want = call_direct(tfs_loaded[1], "encode", image=cli_runs["images"])
    for name in ("mean", "log_variance"):
        got = np.load(cli_runs["tmp"] / "e" / f"{name}.npy")
        assert got.dtype == np.float32 and got.shape == (3, L)
        assert np.max(np.abs(got - want[name])) <= 1e-6, name


# ----------------------------------------------------------------------------------------- warmup
def test_warmup_records_write_read_and_replay(tmp_path, export_dir, tfs_loaded):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    import grpc

    # a copy, so the shared export is not changed under other tests
    base = tmp_path / "savedmodel" / TEST_MODEL_NAME
    shutil.copytree(export_dir / contract.SAVEDMODEL_DIR / TEST_MODEL_NAME / "1", base / "1")
    path = write_warmup_requests(base / "1", L, TEST_IMAGE_SHAPE, batch_sizes=(1, 8))
    assert path == base / "1" / WARMUP_DIR / WARMUP_FILE
    assert [p.name for p in path.parent.iterdir()] == [WARMUP_FILE], "temp file left behind"

    requests = read_warmup_requests(base / "1")
    assert [(r.model_spec.signature_name, next(iter(r.inputs.values())).tensor_shape.dim[0].size)
            for r in requests] == list(itertools.product(contract.SIGNATURES, (1, 8)))
    assert {r.model_spec.name for r in requests} == {TEST_MODEL_NAME}

    loaded = tfs_loaded[1]
    repo = ModelRepository({TEST_MODEL_NAME: base})
    with GrpcContractServer(repo, max_workers=2) as gs, ContractServer(repo, max_requests=50) as rs, \
            grpc.insecure_channel(gs.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        rest = TFServingClient(rs.url, TEST_MODEL_NAME)
        for req in requests:
            sig = req.model_spec.signature_name
            inputs = {k: tf.make_ndarray(t) for k, t in req.inputs.items()}
            (arr,) = inputs.values()
            assert arr.dtype == np.float32
            if sig in ("encode", "reconstruct"):
                assert arr.shape[1:] == TEST_IMAGE_SHAPE and 0 <= arr.min() and arr.max() <= 1
            else:
                assert arr.shape[1:] == (L,)
            want = call_direct(loaded, sig, **inputs)
            # the record as TF Serving replays it: the PredictRequest itself over gRPC
            resp = stub.Predict(req, timeout=10)
            assert sorted(resp.outputs) == sorted(want)
            for name, value in want.items():
                got = tf.make_ndarray(resp.outputs[name])
                assert got.dtype == value.dtype and np.max(np.abs(got.astype(float) - value)) <= 1e-6
            # and through the REST client
            got_rest = rest.predict(sig, inputs)
            for name, value in want.items():
                assert np.max(np.abs(got_rest[name].astype(float) - value)) <= 1e-6


def test_warmup_rewrite_and_errors(tmp_path, export_dir):
    with pytest.raises(ArtifactError, match="is not a SavedModel version directory"):
        write_warmup_requests(tmp_path, L, TEST_IMAGE_SHAPE)
    vdir = tmp_path / "m" / "3"
    shutil.copytree(export_dir / contract.SAVEDMODEL_DIR / TEST_MODEL_NAME / "1", vdir)
    with pytest.raises(ConfigError, match=r"image_shape \(H, W, C\)"):
        write_warmup_requests(vdir, L, (16, 16))
    with pytest.raises(ConfigError, match="batch_sizes must be positive"):
        write_warmup_requests(vdir, L, TEST_IMAGE_SHAPE, batch_sizes=(0,))
    with pytest.raises(ConfigError, match="no warmup inputs known for signature 'classify'"):
        write_warmup_requests(vdir, L, TEST_IMAGE_SHAPE, signatures=("classify",))
    assert not (vdir / WARMUP_DIR / WARMUP_FILE).exists(), "a failed write must leave no file"
    write_warmup_requests(vdir, L, TEST_IMAGE_SHAPE, batch_sizes=(2,), signatures=("encode",),
                          model_name="other")
    (req,) = read_warmup_requests(vdir / WARMUP_DIR / WARMUP_FILE)
    assert (req.model_spec.name, req.model_spec.signature_name) == ("other", "encode")
    with pytest.raises(ArtifactError, match="no warmup file"):
        read_warmup_requests(tmp_path)
