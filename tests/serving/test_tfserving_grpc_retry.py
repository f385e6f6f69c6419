"""TFServingGrpcClient's retries: an RPC that fails with UNAVAILABLE (a loading or restarting server, a refused
connection) is sent again with exponential backoff; DEADLINE_EXCEEDED and other codes are not. The server here
is a real in-process gRPC server that answers PredictionService's GetModelMetadata and Predict with a scripted
sequence of status codes, then with valid tensorflow_serving replies (the transport is under test, not a model).
Also: the contract server's gRPC call log keeps only the newest calls."""
from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from keras_vae.serving.client import (
    TFServingConnectionError,
    TFServingError,
    TFServingGrpcClient,
    TFServingServerError,
    TFServingTimeoutError,
)
from keras_vae.serving.contract_server import (
    KEEP_REQUESTS,
    MAX_GRPC_DETAILS,
    MAX_LOGGED_PATH,
    GrpcContractServer,
    ModelRepository,
)
from tests.support.tfserving import free_port

LATENT, IMAGE = 4, (2, 2, 1)  # the scripted model: image = 2 * z reshaped to 2x2x1
HANG = "hang"  # a script step: hold the RPC until the server stops (the client's deadline passes)
Z = np.arange(8, dtype=np.float32).reshape(2, LATENT) / 8


def signature_map() -> get_model_metadata_pb2.SignatureDefMap:
    """``serving_default``: z [batch, 4] float32 -> image [batch, 2, 2, 1] float32."""
    sig = meta_graph_pb2.SignatureDef(method_name="tensorflow/serving/predict")
    for tensors, name, dims in ((sig.inputs, "z", (-1, LATENT)), (sig.outputs, "image", (-1, *IMAGE))):
        tensors[name].name = f"{name}:0"
        tensors[name].dtype = types_pb2.DT_FLOAT
        for d in dims:
            tensors[name].tensor_shape.dim.add(size=d)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    sig_map.signature_def["serving_default"].CopyFrom(sig)
    return sig_map


class ScriptedGrpcServer:
    """PredictionService on 127.0.0.1: each RPC takes the next step of ``script`` (a grpc.StatusCode to abort
    with, HANG, or None to answer), then answers once the script is used up; ``calls`` records each RPC's name."""

    def __init__(self, script, port: int = 0):
        self.script, self.calls = list(script), []
        self.stopped = threading.Event()
        md, pr = get_model_metadata_pb2, predict_pb2
        handlers = {
            "GetModelMetadata": grpc.unary_unary_rpc_method_handler(
                self._metadata, md.GetModelMetadataRequest.FromString, md.GetModelMetadataResponse.SerializeToString),
            "Predict": grpc.unary_unary_rpc_method_handler(
                self._predict, pr.PredictRequest.FromString, pr.PredictResponse.SerializeToString),
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("tensorflow.serving.PredictionService", handlers),))
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.target = f"127.0.0.1:{self.port}"

    def _step(self, rpc: str, context) -> None:
        self.calls.append(rpc)
        step = self.script.pop(0) if self.script else None
        if step == HANG:
            self.stopped.wait(60)
        elif step is not None:
            context.abort(step, f"scripted {step.name}")

    def _metadata(self, request, context):
        self._step("GetModelMetadata", context)
        resp = get_model_metadata_pb2.GetModelMetadataResponse()
        resp.model_spec.name = request.model_spec.name
        resp.metadata["signature_def"].Pack(signature_map())
        return resp

    def _predict(self, request, context):
        self._step("Predict", context)
        z = tf.make_ndarray(request.inputs["z"])
        resp = predict_pb2.PredictResponse()
        resp.outputs["image"].CopyFrom(tf.make_tensor_proto(2 * z.reshape(-1, *IMAGE)))
        return resp

    def __enter__(self):
        self.server.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.server.stop(grace=None).wait(5)


@pytest.fixture
def sleeps(monkeypatch):
    """The backoff sleeps, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr("keras_vae.serving.client._sleep", waited.append)
    return waited


U = grpc.StatusCode.UNAVAILABLE


def test_unavailable_is_retried_with_exponential_backoff(sleeps):
    with ScriptedGrpcServer([U, U]) as server, TFServingGrpcClient(server.target, "m", retries=2, backoff=0.5) as c:
        np.testing.assert_array_equal(c.decode(Z), 2 * Z.reshape(-1, *IMAGE))
    assert server.calls == ["GetModelMetadata"] * 3 + ["Predict"] and sleeps == [0.5, 1.0]


def test_each_rpc_gets_its_own_retries(sleeps):
    with (ScriptedGrpcServer([U, None, U, U]) as server,
          TFServingGrpcClient(server.target, "m", retries=2, backoff=0.25) as c):
        np.testing.assert_array_equal(c.decode(Z), 2 * Z.reshape(-1, *IMAGE))
    assert server.calls == ["GetModelMetadata"] * 2 + ["Predict"] * 3 and sleeps == [0.25, 0.25, 0.5]


def test_unavailable_after_the_last_retry_is_raised_with_the_attempt_count(sleeps):
    with (ScriptedGrpcServer([U] * 4) as server,
          TFServingGrpcClient(server.target, "m", retries=2, backoff=0.1) as c,
          pytest.raises(TFServingConnectionError,
                        match=r"GetModelMetadata\(m\)\): scripted UNAVAILABLE \(after 3 attempts\)$") as info):
        c.decode(Z)
    assert info.value.transient and server.calls == ["GetModelMetadata"] * 3 and sleeps == pytest.approx([0.1, 0.2])


@pytest.mark.parametrize("code", ["INVALID_ARGUMENT", "NOT_FOUND", "INTERNAL", "RESOURCE_EXHAUSTED",
                                  "FAILED_PRECONDITION"])
def test_other_codes_are_not_retried(sleeps, code):
    with (ScriptedGrpcServer([None, getattr(grpc.StatusCode, code)]) as server,
          TFServingGrpcClient(server.target, "m", retries=3) as c,
          pytest.raises(TFServingServerError, match=rf"returned {code} for Predict.*: scripted {code}$") as info):
        c.decode(Z)
    assert info.value.status == code and server.calls == ["GetModelMetadata", "Predict"] and sleeps == []


def test_a_code_after_a_retry_carries_the_attempt_count(sleeps):
    with (ScriptedGrpcServer([U, grpc.StatusCode.NOT_FOUND]) as server,
          TFServingGrpcClient(server.target, "m", retries=3, backoff=0.2) as c,
          pytest.raises(TFServingServerError, match=r"scripted NOT_FOUND \(after 2 attempts\)$")):
        c.signatures()
    assert server.calls == ["GetModelMetadata"] * 2 and sleeps == [0.2]


def test_deadline_exceeded_is_not_retried(sleeps):
    with (ScriptedGrpcServer([grpc.StatusCode.DEADLINE_EXCEEDED]) as server,
          TFServingGrpcClient(server.target, "m", retries=3) as c,
          pytest.raises(TFServingTimeoutError, match="within 10 s$")):
        c.signatures()
    assert server.calls == ["GetModelMetadata"] and sleeps == []


def test_a_missed_deadline_is_not_retried(sleeps):
    with (ScriptedGrpcServer([None, HANG]) as server,
          TFServingGrpcClient(server.target, "m", retries=3, timeout=0.5) as c,
          pytest.raises(TFServingTimeoutError, match=r"Predict\(m, 'serving_default'\)\) within 0.5 s$")):
        c.decode(Z)
    assert server.calls == ["GetModelMetadata", "Predict"] and sleeps == []


def test_retries_zero_sends_once(sleeps):
    with (ScriptedGrpcServer([U]) as server, TFServingGrpcClient(server.target, "m", retries=0) as c,
          pytest.raises(TFServingConnectionError, match=r"scripted UNAVAILABLE$")):
        c.signatures()
    assert server.calls == ["GetModelMetadata"] and sleeps == []


def test_a_refused_connection_is_retried_then_raised(sleeps):
    target = f"127.0.0.1:{free_port()}"
    with (TFServingGrpcClient(target, "m", retries=2, backoff=0.25, timeout=5) as c,
          pytest.raises(TFServingConnectionError,
                        match=rf"cannot reach TF Serving at {target} .*\(after 3 attempts\)$") as info):
        c.decode(Z)
    assert info.value.transient and not isinstance(info.value, TFServingTimeoutError) and sleeps == [0.25, 0.5]


def test_a_server_that_comes_up_during_the_backoff_is_reached(monkeypatch):
    """gRPC fails RPCs at once for its reconnect backoff (1 s by default) after a refused connection; the
    client's channel reconnects within half the first backoff, so the retries (0.25 s, 0.5 s later) get through."""
    port, servers, waited = free_port(), [], []

    def sleep(seconds):  # the server starts after the first refusal; the wait is real here
        waited.append(seconds)
        if not servers:
            servers.append(ScriptedGrpcServer([], port=port).__enter__())
        time.sleep(seconds)

    monkeypatch.setattr("keras_vae.serving.client._sleep", sleep)
    try:
        with TFServingGrpcClient(f"127.0.0.1:{port}", "m", retries=2, backoff=0.25) as c:
            np.testing.assert_array_equal(c.decode(Z), 2 * Z.reshape(-1, *IMAGE))
    finally:
        for server in servers:
            server.__exit__(None, None, None)
    assert servers[0].calls == ["GetModelMetadata", "Predict"] and waited[0] == 0.25


@pytest.mark.parametrize("kwargs, message", [
    ({"retries": -1}, "retries must be a non-negative integer"),
    ({"retries": 1.5}, "retries must be a non-negative integer"),
    ({"retries": True}, "retries must be a non-negative integer"),
    ({"backoff": -0.1}, "backoff must be a non-negative number"),
    ({"backoff": float("nan")}, "backoff must be a non-negative number"),
    ({"backoff": "1"}, "backoff must be a non-negative number"),
])
def test_retry_options_are_checked(kwargs, message):
    with pytest.raises(TFServingError, match=message):
        TFServingGrpcClient("127.0.0.1:8500", "m", **kwargs)


# ---------------------------------------------------------------------------- the contract server's call log
def test_the_grpc_contract_servers_call_log_keeps_the_newest_calls():
    repo = ModelRepository.__new__(ModelRepository)  # no model: every Predict is NOT_FOUND, after it is logged
    repo.models = {}
    assert GrpcContractServer(repo).calls.maxlen == KEEP_REQUESTS  # the default is bounded too
    with pytest.raises(ValueError, match="keep_calls must be an integer >= 0"):
        GrpcContractServer(repo, keep_calls=-1)
    with (GrpcContractServer(repo, keep_calls=20, max_workers=1) as server,
          grpc.insecure_channel(server.target) as channel):
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        names = [f"m{i}" for i in range(59)] + ["x" * 10_000]
        for name in names:
            request = predict_pb2.PredictRequest()
            request.model_spec.name, request.model_spec.signature_name = name, "decode"
            with pytest.raises(grpc.RpcError) as info:
                stub.Predict(request, timeout=30)
            # the 10,000-character name comes back cut to MAX_GRPC_DETAILS (whole, it would overflow gRPC's
            # metadata limit, which answers RESOURCE_EXHAUSTED instead of the status, at random)
            details = info.value.details()
            assert info.value.code() == grpc.StatusCode.NOT_FOUND, details[:200]
            assert name[:100] in details and len(details) <= MAX_GRPC_DETAILS
            assert details.endswith("...") == (name == names[-1])
        assert server.call_count == 60
        assert list(server.calls) == [("Predict", name[:MAX_LOGGED_PATH], "decode") for name in names[40:]]
        assert len(server.calls[-1][1]) == MAX_LOGGED_PATH
