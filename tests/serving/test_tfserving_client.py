"""TFServingClient (REST) and TFServingGrpcClient against the local contract servers.

The contract servers (serving/contract_server.py) run the SavedModel with tf.saved_model.load and
speak TF Serving's documented API; they are a contract test, not TF Serving. Every result is compared
with calling the SavedModel signature directly.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from keras_vae.export import contract
from keras_vae.serving.client import (InputShapeError, SignatureNotFoundError, TFServingClient,
                            TFServingConnectionError, TFServingError, TFServingGrpcClient,
                            TFServingServerError, TFServingTimeoutError, ndarray_to_tensor_proto,
                            tensor_proto_to_ndarray)
from keras_vae.serving.contract_server import ContractServer, GrpcContractServer, ModelRepository
from tests.support.tfserving import (TEST_IMAGE_SHAPE, TEST_LATENT_DIM, TEST_MODEL_NAME, call_direct, free_port,
                                     random_inputs)

TOL = 1e-6
OUTPUTS = {"serving_default": ("image",), "decode_uint8": ("image",), "encode": ("mean", "log_variance"),
           "reconstruct": ("image",)}
MAX_DIFF: dict = {}  # measured, printed at the end of the module


@pytest.fixture(scope="module")
def export_dir(tfs_export):
    return tfs_export


@pytest.fixture(scope="module")
def loaded(tfs_loaded):
    return tfs_loaded


@pytest.fixture(scope="module")
def repo(export_dir):
    return ModelRepository({TEST_MODEL_NAME: export_dir / contract.SAVEDMODEL_DIR / TEST_MODEL_NAME})


@pytest.fixture(scope="module")
def server(repo):
    with ContractServer(repo, max_requests=500) as s:
        yield s


@pytest.fixture(scope="module")
def grpc_server(repo):
    with GrpcContractServer(repo, max_workers=2) as s:
        yield s


@pytest.fixture(scope="module", autouse=True)
def report_max_diff():
    yield
    if MAX_DIFF:
        print("\nmax abs diff vs SavedModel called directly:",
              {k: float(v) for k, v in sorted(MAX_DIFF.items())})


def call_method(client, signature, inputs, fmt=None):
    kw = {} if fmt is None else {"format": fmt}
    (value,) = inputs.values()
    if signature == "serving_default":
        return {"image": client.decode(value, **kw)}
    if signature == "decode_uint8":
        return {"image": client.decode_uint8(value, **kw)}
    if signature == "encode":
        mean, log_variance = client.encode(value, **kw)
        return {"mean": mean, "log_variance": log_variance}
    return {"image": client.reconstruct(value, **kw)}


def check_against_direct(got: dict, want: dict, key: str):
    assert sorted(got) == sorted(want)
    for name in want:
        assert got[name].dtype == want[name].dtype, name
        assert got[name].shape == want[name].shape, name
        diff = float(np.max(np.abs(got[name].astype(np.float64) - want[name].astype(np.float64))))
        MAX_DIFF[key] = max(MAX_DIFF.get(key, 0.0), diff)
        assert diff <= TOL, f"{key} {name}: max abs diff {diff}"


# ----------------------------------------------------------------------------------- REST results
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("fmt", ["columnar", "row"])
@pytest.mark.parametrize("signature", contract.SIGNATURES)
def test_rest_matches_savedmodel(server, loaded, signature, fmt, batch):
    client = TFServingClient(server.url, TEST_MODEL_NAME)
    inputs = random_inputs(signature, batch)
    got = call_method(client, signature, inputs, fmt)
    want = call_direct(loaded[2], signature, **inputs)  # version=None -> latest (2)
    check_against_direct(got, want, f"rest-{fmt}")
    via_predict = client.predict(signature, inputs, format=fmt)
    assert sorted(via_predict) == sorted(OUTPUTS[signature])
    if signature == "decode_uint8":
        assert got["image"].dtype == np.uint8 and got["image"].shape == (batch, *TEST_IMAGE_SHAPE)
    if signature == "encode":
        assert got["mean"].shape == (batch, TEST_LATENT_DIM)


def test_rest_request_bodies_follow_the_documented_formats(server):
    """The wire format itself: row 'instances' -> 'predictions', columnar 'inputs' -> 'outputs'."""
    url = f"{server.url}/v1/models/{TEST_MODEL_NAME}:predict"
    z = [[0.1, -0.2, 0.3, 0.0], [1.0, 0.5, -1.5, 2.0]]

    def post(body):
        req = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    rows = post({"signature_name": "decode_uint8", "instances": z})
    cols = post({"signature_name": "decode_uint8", "inputs": {"z": z}})
    assert np.asarray(rows["predictions"]).shape == (2, *TEST_IMAGE_SHAPE)
    assert rows["predictions"] == cols["outputs"]  # single output: bare value, no name
    named_rows = post({"signature_name": "encode", "instances": [{"image": np.full(TEST_IMAGE_SHAPE, 0.5).tolist()}]})
    assert sorted(named_rows["predictions"][0]) == ["log_variance", "mean"]  # several outputs: per-row dicts
    default = post({"instances": z})  # no signature_name: serving_default
    assert np.asarray(default["predictions"]).dtype == np.float64


def test_versions_status_and_metadata(server, loaded):
    latest = TFServingClient(server.url, TEST_MODEL_NAME)
    v1 = TFServingClient(server.url, TEST_MODEL_NAME, version=1)
    z = random_inputs("serving_default", 3)["z"]
    np.testing.assert_allclose(v1.decode(z), call_direct(loaded[1], "serving_default", z=z)["image"],
                               rtol=0, atol=TOL)
    assert np.max(np.abs(v1.decode(z) - latest.decode(z))) > 1e-3  # the versions differ
    status = latest.status()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("2", "AVAILABLE"), ("1", "AVAILABLE")]
    assert v1.is_ready()
    assert v1.metadata()["model_spec"]["version"] == "1"
    sigs = latest.signatures()
    assert sorted(sigs) == sorted(contract.SIGNATURES)
    assert sigs["encode"].inputs["image"].shape == (-1, *TEST_IMAGE_SHAPE)
    assert {k: v.dtype for k, v in sigs["encode"].outputs.items()} == {"mean": "DT_FLOAT",
                                                                      "log_variance": "DT_FLOAT"}
    assert sigs["decode_uint8"].outputs["image"].dtype == "DT_UINT8"
    assert sigs["serving_default"].inputs["z"].shape == (-1, TEST_LATENT_DIM)


# ---------------------------------------------------------------------------------- REST errors
def test_unknown_model_and_version_are_404(server):
    with pytest.raises(TFServingServerError, match=r"HTTP 404 .*Servable not found for request: "
                                                   r"Latest\(nope\)") as e:
        TFServingClient(server.url, "nope").decode(np.zeros((1, TEST_LATENT_DIM), np.float32))
    assert e.value.status == 404
    with pytest.raises(TFServingServerError, match=r"Specific\(tinyvae, 9\)") as e:
        TFServingClient(server.url, TEST_MODEL_NAME, version=9).status()
    assert e.value.status == 404


def test_unknown_signature(server):
    client = TFServingClient(server.url, TEST_MODEL_NAME)
    with pytest.raises(SignatureNotFoundError, match=r"no signature 'decode_f16'; it has: decode_uint8, "
                                                     r"encode, reconstruct, serving_default"):
        client.predict("decode_f16", np.zeros((1, 4), np.float32))
    # without metadata the server refuses it, with TF Serving's message and status 400
    blind = TFServingClient(server.url, TEST_MODEL_NAME, validate=False)
    with pytest.raises(TFServingServerError, match=r'HTTP 400 .*"decode_f16" not found in signature def'):
        blind.predict("decode_f16", {"z": np.zeros((1, 4), np.float32)})


def test_shape_errors_are_caught_before_sending(server):
    client = TFServingClient(server.url, TEST_MODEL_NAME)
    client.signatures()
    before = len(server.requests)
    with pytest.raises(InputShapeError, match=r"input 'z' of signature 'serving_default' must have "
                                              r"shape \[batch, 4\], got \[2, 5\]"):
        client.decode(np.zeros((2, 5), np.float32))
    with pytest.raises(InputShapeError, match=r"must have shape \[batch, 4\], got \[4\] \(add a batch axis"):
        client.decode_uint8(np.zeros(4, np.float32))
    with pytest.raises(InputShapeError, match=r"input 'image' .* \[batch, 16, 16, 1\], got \[1, 28, 28, 1\]"):
        client.encode(np.zeros((1, 28, 28, 1), np.float32))
    with pytest.raises(InputShapeError, match="contains NaN or Inf"):
        client.decode(np.array([[0, np.nan, 0, 0]], np.float32))
    with pytest.raises(InputShapeError, match="empty batch"):
        client.decode(np.zeros((0, 4), np.float32))
    with pytest.raises(InputShapeError, match=r"missing \[\], unexpected \['x'\]"):
        client.predict("encode", {"image": np.zeros((1, *TEST_IMAGE_SHAPE)), "x": np.zeros(1)})
    assert len(server.requests) == before, "invalid inputs must not reach the server"
    # the server checks too (validate=False skips the client checks)
    blind = TFServingClient(server.url, TEST_MODEL_NAME, validate=False)
    with pytest.raises(TFServingServerError, match=r"HTTP 400 .*input 'z' has shape \[2, 5\]"):
        blind.decode(np.zeros((2, 5), np.float32))


def test_server_rejects_malformed_requests(server):
    base = f"{server.url}/v1/models/{TEST_MODEL_NAME}"

    def status_of(url, data=None):
        req = urllib.request.Request(url, data, method="POST" if data is not None else "GET")
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
        return e.value.code, json.loads(e.value.read())["error"]

    code, msg = status_of(base + ":predict", b"{not json")
    assert code == 400 and "JSON Parse error" in msg
    code, msg = status_of(base + ":predict", json.dumps({"instances": [[0] * 4], "inputs": [[0] * 4]}).encode())
    assert code == 400 and "exactly one of 'instances'" in msg
    code, msg = status_of(server.url + "/v2/models/x")
    assert code == 404 and "Malformed request" in msg
    code, msg = status_of(base + ":predict")  # GET on :predict
    assert code == 405


def test_server_down_is_a_connection_error():
    client = TFServingClient(f"http://127.0.0.1:{free_port()}", TEST_MODEL_NAME, timeout=2)
    with pytest.raises(TFServingConnectionError, match=r"cannot reach TF Serving at http://127\.0\.0\.1:\d+"):
        client.decode(np.zeros((1, TEST_LATENT_DIM), np.float32))


def test_timeout(repo):
    with ContractServer(repo, delay_s=1.0, max_requests=10) as slow:
        client = TFServingClient(slow.url, TEST_MODEL_NAME, timeout=0.3)
        client.signatures()  # metadata is not delayed
        with pytest.raises(TFServingTimeoutError, match=r"no answer from POST .*:predict within 0.3 s"):
            client.decode(np.zeros((1, TEST_LATENT_DIM), np.float32))


def test_request_limit(repo):
    with ContractServer(repo, max_requests=1) as s:
        client = TFServingClient(s.url, TEST_MODEL_NAME)
        client.status()
        with pytest.raises(TFServingServerError, match=r"HTTP 503 .*request limit \(1\) reached"):
            client.status()


def test_constructor_checks():
    with pytest.raises(TFServingError, match="base_url must look like"):
        TFServingClient("localhost:8501", "vae")
    with pytest.raises(TFServingError, match="timeout must be a positive"):
        TFServingClient("http://localhost:8501", "vae", timeout=0)
    with pytest.raises(TFServingError, match="version must be a non-negative integer"):
        TFServingClient("http://localhost:8501", "vae", version="latest")
    with pytest.raises(TFServingError, match="format must be 'columnar' or 'row'"):
        TFServingClient("http://localhost:8501", "vae", validate=False).predict("encode", {}, format="col")


# ------------------------------------------------------------------------------------------- gRPC
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("signature", contract.SIGNATURES)
def test_grpc_matches_savedmodel(grpc_server, loaded, signature, batch):
    with TFServingGrpcClient(grpc_server.target, TEST_MODEL_NAME) as client:
        inputs = random_inputs(signature, batch, seed=5)
        check_against_direct(call_method(client, signature, inputs),
                             call_direct(loaded[2], signature, **inputs), "grpc")


def test_grpc_version_and_errors(grpc_server, loaded, repo):
    z = random_inputs("serving_default", 2)["z"]
    with TFServingGrpcClient(grpc_server.target, TEST_MODEL_NAME, version=1) as v1:
        np.testing.assert_allclose(v1.decode(z), call_direct(loaded[1], "serving_default", z=z)["image"],
                                   rtol=0, atol=TOL)
        assert sorted(v1.signatures()) == sorted(contract.SIGNATURES)
        with pytest.raises(SignatureNotFoundError, match="no signature 'nope'"):
            v1.predict("nope", z)
        with pytest.raises(InputShapeError, match=r"shape \[batch, 4\], got \[2, 3\]"):
            v1.decode(z[:, :3])
    with TFServingGrpcClient(grpc_server.target, "nope") as missing:
        with pytest.raises(TFServingServerError, match=r"NOT_FOUND .*Servable not found for request") as e:
            missing.decode(z)
        assert e.value.status == "NOT_FOUND"
    with TFServingGrpcClient(f"127.0.0.1:{free_port()}", TEST_MODEL_NAME, timeout=3) as down:
        with pytest.raises(TFServingConnectionError, match="cannot reach TF Serving at 127.0.0.1"):
            down.decode(z)
    with GrpcContractServer(repo, delay_s=1.0, max_workers=1) as slow:
        with TFServingGrpcClient(slow.target, TEST_MODEL_NAME, timeout=0.3, validate=False) as c:
            with pytest.raises(TFServingTimeoutError, match="within 0.3 s"):
                c.decode(z)


@pytest.mark.parametrize("arr", [
    np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 7,
    np.arange(12, dtype=np.uint8).reshape(3, 4),
    np.array([[np.float32(1e-30), -0.0]], np.float32),
])
def test_tensor_proto_conversion_matches_tensorflow(arr):
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2

    ours = ndarray_to_tensor_proto(arr, tensor_pb2, tensor_shape_pb2)
    back = tf.make_ndarray(ours)
    assert back.dtype == arr.dtype and np.array_equal(back, arr)
    theirs = tensor_proto_to_ndarray(tf.make_tensor_proto(arr))
    assert theirs.dtype == arr.dtype and np.array_equal(theirs, arr)
    splat = tf.make_tensor_proto(np.float32(0.25), shape=[2, 3])  # one float_val for all
    assert np.array_equal(tensor_proto_to_ndarray(splat), np.full((2, 3), 0.25, np.float32))
