"""The contract servers bound one request: body bytes (413), batch size (400), finite numbers (400).

Limits are checked before the request is converted to arrays, so a 4 MB body of 200k latents (which
pushed the unbounded server past 20 GB) is refused at once; requests at the limit still decode exactly.
"""
from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from keras_vae.export import contract
from keras_vae.serving.contract_server import (MAX_REQUEST_BYTES, ContractServer, GrpcContractServer,
                                     ModelRepository)
from tests.support.tfserving import TEST_LATENT_DIM, TEST_MODEL_NAME, call_direct

MAX_BATCH = 4
URL = f"/v1/models/{TEST_MODEL_NAME}:predict"


@pytest.fixture(scope="module")
def export_dir(tfs_export):
    return tfs_export


@pytest.fixture(scope="module")
def repo(export_dir):
    return ModelRepository({TEST_MODEL_NAME: export_dir / contract.SAVEDMODEL_DIR / TEST_MODEL_NAME})


@pytest.fixture(scope="module")
def server(repo):
    with ContractServer(repo, max_batch=MAX_BATCH, max_request_bytes=4096) as s:
        yield s


def post(server, raw: bytes, headers=None):
    """(status, decoded JSON) of a raw POST."""
    req = urllib.request.Request(server.url + URL, raw, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_defaults_are_the_exported_max_batch():
    from keras_vae.serving.onnx_decoder import OnnxDecoder
    import inspect

    default = inspect.signature(OnnxDecoder).parameters["max_batch"].default
    for cls in (ContractServer, GrpcContractServer):
        params = inspect.signature(cls).parameters
        assert params["max_batch"].default == default == contract.MAX_BATCH
        assert params["max_request_bytes"].default == MAX_REQUEST_BYTES


def test_a_batch_at_the_limit_decodes_exactly(server, tfs_loaded):
    z = np.random.default_rng(0).standard_normal((MAX_BATCH, TEST_LATENT_DIM)).astype(np.float32)
    status, body = post(server, json.dumps({"inputs": {"z": z.tolist()}}).encode())
    assert status == 200
    want = call_direct(tfs_loaded[2], "serving_default", z=z)["image"]
    np.testing.assert_allclose(np.asarray(body["outputs"], np.float32), want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("fmt", ["inputs", "instances"])
def test_a_batch_over_the_limit_is_400(server, fmt):
    z = np.zeros((MAX_BATCH + 1, TEST_LATENT_DIM)).tolist()
    body = {"inputs": {"z": z}} if fmt == "inputs" else {"instances": z}
    status, reply = post(server, json.dumps(body).encode())
    assert status == 400
    assert f"batch size {MAX_BATCH + 1}" in reply["error"] and f"max_batch {MAX_BATCH}" in reply["error"]


def test_a_body_over_the_limit_is_413_without_reading_it(server):
    # the 200k-latent request of the issue, cut to a header: the server must answer from Content-Length
    host, port = server.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", URL)
    conn.putheader("Content-Length", str(4_400_000))
    conn.endheaders()
    conn.send(b"[" * 1000)  # only a fraction of what was announced
    reply = conn.getresponse()
    assert reply.status == 413
    assert "exceeds this server's limit of 4096 bytes" in json.loads(reply.read())["error"]
    conn.close()


@pytest.mark.parametrize("raw, message", [
    (b'{"inputs": {"z": [[NaN, 0, 0, 0, 0, 0, 0, 0]]}}', "NaN is not valid JSON"),
    (b'{"inputs": {"z": [[Infinity, 0, 0, 0, 0, 0, 0, 0]]}}', "Infinity is not valid JSON"),
    (b'{"inputs": {"z": [[-Infinity, 0, 0, 0, 0, 0, 0, 0]]}}', "-Infinity is not valid JSON"),
    (b'{"inputs": {"z": [[1e400, 0, 0, 0, 0, 0, 0, 0]]}}', "contains NaN or Infinity"),  # parses to inf
    (b'{"inputs": {"z": [[3.5e38, 0, 0, 0, 0, 0, 0, 0]]}}', "contains NaN or Infinity"),  # float32 overflow
    (b"[" * 1500 + b"]" * 1500, "JSON Parse error"),  # nesting deeper than the recursion limit
])
def test_non_finite_or_malformed_numbers_are_400(server, raw, message):
    status, reply = post(server, raw)
    assert status == 400, reply
    assert message in reply["error"]


def test_bad_content_length_is_400(server):
    host, port = server.url.split("//")[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", URL)
    conn.putheader("Content-Length", "-5")
    conn.endheaders()
    reply = conn.getresponse()
    assert reply.status == 400 and "is not a byte count" in json.loads(reply.read())["error"]
    conn.close()


def test_grpc_bounds_batch_and_non_finite_values(repo):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    with GrpcContractServer(repo, max_workers=1, max_batch=MAX_BATCH) as server:
        with grpc.insecure_channel(server.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

            def predict(z):
                request = predict_pb2.PredictRequest()
                request.model_spec.name = TEST_MODEL_NAME
                request.inputs["z"].CopyFrom(tf.make_tensor_proto(np.asarray(z, np.float32)))
                return stub.Predict(request, timeout=30)

            ok = predict(np.zeros((MAX_BATCH, TEST_LATENT_DIM)))
            assert list(ok.outputs["image"].tensor_shape.dim)[0].size == MAX_BATCH
            with pytest.raises(grpc.RpcError) as over:
                predict(np.zeros((MAX_BATCH + 1, TEST_LATENT_DIM)))
            assert over.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "max_batch" in over.value.details()
            bad = np.zeros((1, TEST_LATENT_DIM))
            bad[0, 3] = np.nan
            with pytest.raises(grpc.RpcError) as nan:
                predict(bad)
            assert nan.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "NaN or Infinity" in nan.value.details()


@pytest.mark.parametrize("kwargs", [{"max_batch": 0}, {"max_request_bytes": -1}, {"max_batch": True}])
def test_limits_must_be_positive_integers(repo, kwargs):
    with pytest.raises(ValueError, match="must be an integer >= 1"):
        ContractServer(repo, **kwargs)
