"""The contract server and serve-demo under load and under clients that misbehave.

Real sockets on 127.0.0.1, bounded counts and timeouts; assertions are on outcomes (every request
answered, status codes, no reset, bounded threads, connections closed by the server), never on speed.
The contract server runs a stand-in model here (no TensorFlow): what is tested is its HTTP layer.
"""
from __future__ import annotations

import http.client
import json
import logging
import socket
import struct
import threading
import time
import tracemalloc
from collections import Counter

import numpy as np
import pytest

from keras_vae.serving import json_arrays
from keras_vae.serving.contract_server import (
    KEEP_REQUESTS,
    ContractServer,
    ModelRepository,
)
from keras_vae.serving.httpd import Limits

MODEL = "m"
PREDICT = f"/v1/models/{MODEL}:predict"
CLIENT_TIMEOUT = 60  # seconds a test client waits for an answer before it counts as a failure


class _Signature:
    def __init__(self, *inputs):
        self.inputs = dict.fromkeys(inputs)


class FakeVersion:
    """Stands in for a loaded SavedModel: ``serving_default`` doubles ``z``; ``two`` has two outputs.
    ``gate`` (a threading.Event), when set on the instance, holds every call until it is set."""

    def __init__(self):
        self.signature_defs = {"serving_default": _Signature("z"), "two": _Signature("z")}
        self.entered = threading.Event()
        self.gate: threading.Event | None = None
        self.seen: list = []

    def run(self, signature, inputs, max_batch=None):
        z = np.asarray(inputs["z"], np.float32)
        self.seen.append(z)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(CLIENT_TIMEOUT)
        if signature == "two":
            return {"a": z, "b": z.sum(axis=-1)}
        return {"image": z * 2}


def fake_repo() -> tuple[ModelRepository, FakeVersion]:
    version = FakeVersion()
    repo = ModelRepository.__new__(ModelRepository)  # no SavedModel to load
    repo.models = {MODEL: {1: version}}
    return repo, version


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


def post(port: int, body: bytes, headers=None, path: str = PREDICT) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one POST on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
    try:
        conn.request("POST", path, body, {"Content-Type": "application/json", **(headers or {})})
        reply = conn.getresponse()
        return reply.status, dict(reply.getheaders()), reply.read()
    finally:
        conn.close()


def at_once(n: int, call) -> Counter:
    """Run ``call(i)`` in ``n`` threads released together; Counter of results (exception names on failure)."""
    results = [None] * n
    barrier = threading.Barrier(n)

    def one(i):
        barrier.wait()
        try:
            results[i] = call(i)
        except Exception as exc:  # noqa: BLE001 - counted, asserted on below
            results[i] = type(exc).__name__

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(CLIENT_TIMEOUT * 2)
    return Counter(results)


def read_until_closed(sock: socket.socket, timeout: float = 20.0) -> bytes:
    """Everything the server sends until it closes the connection; raises socket.timeout if it never does."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            return data + b"<reset>"
        if not piece:
            return data
        data += piece


def responses_on(sock: socket.socket, count: int) -> list:
    """Read ``count`` HTTP responses (with Content-Length) from one socket: [(status, json body)]."""
    reader = sock.makefile("rb")
    out = []
    for _ in range(count):
        status = int(reader.readline().split()[1])
        headers = {}
        for line in iter(reader.readline, b"\r\n"):
            name, _, value = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
        out.append((status, json.loads(reader.read(int(headers["content-length"])))))
    return out


@pytest.fixture
def served():
    repo, version = fake_repo()
    with ContractServer(repo) as server:
        yield server, version


# ------------------------------------------------------------------------------ many clients at once
def test_200_simultaneous_predicts_are_all_answered(served):
    server, _ = served
    port = port_of(server.url)
    body = json.dumps({"inputs": {"z": [[1.0, 2.0]]}}).encode()
    results = at_once(200, lambda i: post(port, body)[0])
    assert results == Counter({200: 200})  # before: 135 of 200 were ConnectionResetError
    assert server.handler_threads <= Limits().max_threads


def test_100_simultaneous_tfserving_clients_all_succeed(served):
    from keras_vae.serving.client import TFServingClient

    server, _ = served
    client = TFServingClient(server.url, MODEL, timeout=CLIENT_TIMEOUT, validate=False)

    def decode(i):
        image = client.decode(np.full((1, 2), i, np.float32))
        return "ok" if np.array_equal(image, np.full((1, 2), 2 * i, np.float32)) else "wrong"

    assert at_once(100, decode) == Counter({"ok": 100})  # before: 25 of 100 raised


def test_a_full_queue_is_503_with_retry_after_never_a_reset():
    repo, version = fake_repo()
    version.gate = threading.Event()
    limits = Limits(max_threads=1, max_queued=1, retry_after_s=3)
    body = json.dumps({"inputs": {"z": [[1.0]]}}).encode()
    with ContractServer(repo, limits=limits) as server:
        port = port_of(server.url)
        held = []
        for _ in range(2):  # one handled (held at the gate), one queued
            sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
            sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                         % (PREDICT.encode(), len(body), body))
            held.append(sock)
            assert version.entered.wait(CLIENT_TIMEOUT)
        try:
            for _ in range(5):
                status, headers, reply = post(port, body)
                assert status == 503 and headers["Retry-After"] == "3", (status, headers)
                assert "server busy" in json.loads(reply)["error"]
        finally:
            version.gate.set()
        assert [status for sock in held for status, _ in responses_on(sock, 1)] == [200, 200]
        for sock in held:
            sock.close()
        assert server.handler_threads == 1


# ------------------------------------------------------------------------------------ memory per body
def test_long_arrays_parse_without_a_python_float_per_number(monkeypatch):
    monkeypatch.setattr(json_arrays, "CHUNK_BYTES", 64 << 10)  # the text copied at a time: small here
    rng = np.random.default_rng(0)
    images = rng.random((64, 32, 32, 3)).astype(np.float32)
    raw = json.dumps({"signature_name": "encode", "inputs": {"image": images.tolist()}}).encode()
    tracemalloc.start()
    try:
        body = json_arrays.loads(raw)
        array = np.asarray(body["inputs"]["image"], np.float32)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(array, images)
    # json.loads holds a Python float and a list slot per number (32 bytes: 1.5x the ~21 bytes of its
    # text); parsed here: the float32 result (4 bytes per number), the brackets and commas twice (about
    # 2 bytes per number each, to check the shape) and a few chunks of text
    assert peak < len(raw) / 2, (peak, len(raw))


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4), (1, 1, 1, 1), (70, 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32])
def test_long_arrays_parse_like_json(shape, dtype):
    rng = np.random.default_rng(len(shape))
    values = (rng.standard_normal(shape) * 10.0 ** rng.integers(-30, 30, shape)).astype(np.float32)
    if dtype is np.int32:
        values = rng.integers(-1000, 1000, shape)
    payload = {"s": "[1, 2, 3] is a string", "inputs": {"z": values.tolist()}, "rows": [{"k": [[1, 2], [3, 4]]}]}
    raw = json.dumps(payload, indent=1 if len(shape) == 3 else None).encode()
    got, want = json_arrays.loads(raw, min_array_bytes=8), json.loads(raw)
    assert isinstance(got["inputs"]["z"], json_arrays.NumericArray) and got["inputs"]["z"].shape == shape
    np.testing.assert_array_equal(np.asarray(got["inputs"]["z"], dtype), np.asarray(want["inputs"]["z"], dtype))
    assert got["s"] == want["s"] and np.array_equal(np.asarray(got["rows"][0]["k"]), want["rows"][0]["k"])


@pytest.mark.parametrize("raw", [b"[[1, 2], [3]]", b"[[1, 2], 3, 4, 5, 6, 7]", b'[1, "a", 2, 3, 4, 5]', b"[]",
                                 b"[[1, 2], [3, [4]]]", b"[01, 2, 3, 4, 5]", b"[1., 2, 3, 4]", b"[+1, 2, 3, 4]",
                                 b"[1 2, 3, 4]", b"[[1, 2], [3, 4]]]", b"[NaN, 1, 2, 3, 4]", b'{"a": [1, 2, 3, 4]'])
def test_what_is_not_a_rectangular_array_of_json_numbers_is_left_to_json(raw):
    try:
        want = json.loads(raw)
    except ValueError:
        with pytest.raises(ValueError):
            json_arrays.loads(raw, min_array_bytes=4)
        return
    assert json_arrays.loads(raw, min_array_bytes=4) == want


@pytest.mark.parametrize("raw", [b"[1, , 2, 3, 4]", b"[[1, 2], [, 3]]", b"[1, 2, 3, ]", b"[ , 1, 2, 3]"])
def test_an_array_with_holes_is_refused(raw):
    with pytest.raises(ValueError):  # np.fromstring alone would read a hole as -1
        np.asarray(json_arrays.loads(raw, min_array_bytes=2), np.float32)


def test_replies_are_written_in_pieces_identical_to_json_dumps():
    rng = np.random.default_rng(1)
    a, b = rng.random((9, 3, 2)).astype(np.float32), rng.standard_normal(9)
    cases = [({"outputs": a}, {"outputs": a.tolist()}),
             ({"outputs": {"a": a, "n": np.array(3)}}, {"outputs": {"a": a.tolist(), "n": 3}}),
             ({"predictions": json_arrays.Rows({"a": a, "b": b})},
              {"predictions": [{"a": a[i].tolist(), "b": float(b[i])} for i in range(9)]}),
             ({"outputs": np.zeros((0, 3))}, {"outputs": []}), ({"error": "x"}, {"error": "x"})]
    for payload, plain in cases:
        pieces = list(json_arrays.iter_json(payload, chunk_bytes=64))
        assert b"".join(pieces) == json.dumps(plain).encode()
    assert len(list(json_arrays.iter_json({"outputs": a}, chunk_bytes=64))) > 3  # really in pieces


def test_a_long_reply_is_sent_chunked_and_equal(served):
    server, _ = served
    z = np.random.default_rng(2).standard_normal((200, 1000)).astype(np.float32)  # reply > STREAM_AFTER
    status, headers, reply = post(port_of(server.url), json.dumps({"instances": z.tolist()}).encode())
    assert status == 200 and headers.get("Transfer-Encoding") == "chunked"
    np.testing.assert_array_equal(np.asarray(json.loads(reply)["predictions"], np.float32), z * 2)


def test_bodies_in_flight_are_capped_with_503_retry_after():
    repo, version = fake_repo()
    version.gate = threading.Event()
    body = json.dumps({"inputs": {"z": [[0.5] * 8000]}}).encode()  # ~40 kB
    with ContractServer(repo, max_request_bytes=50_000, max_inflight_bytes=60_000) as server:
        port = port_of(server.url)
        first = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
        first.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (PREDICT.encode(), len(body), body))
        assert version.entered.wait(CLIENT_TIMEOUT)  # holds ~40 kB of the 60 kB budget
        try:
            status, headers, reply = post(port, body)
            assert status == 503 and headers["Retry-After"] == "1"
            assert "bytes of request bodies, its limit is 60000" in json.loads(reply)["error"]
        finally:
            version.gate.set()
        assert responses_on(first, 1)[0][0] == 200
        first.close()
        deadline = time.monotonic() + CLIENT_TIMEOUT  # released right after the reply is written
        while server.budget.reserved and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.budget.reserved == 0 and server.budget.peak <= 60_000


@pytest.mark.slow  # loads the SavedModel's two versions (a few seconds)
def test_long_bodies_through_a_real_savedmodel_match_calling_it(tfs_export, tfs_loaded):
    from keras_vae.export import contract
    from tests.support.tfserving import TEST_IMAGE_SHAPE, TEST_MODEL_NAME, call_direct

    repo = ModelRepository({TEST_MODEL_NAME: tfs_export / contract.SAVEDMODEL_DIR / TEST_MODEL_NAME})
    images = np.random.default_rng(3).random((300, *TEST_IMAGE_SHAPE)).astype(np.float32)
    want = call_direct(tfs_loaded[2], "reconstruct", image=images)["image"]
    with ContractServer(repo) as server:
        for body, key in [({"inputs": {"image": images.tolist()}}, "outputs"), ({"instances": images.tolist()}, "predictions")]:
            raw = json.dumps({"signature_name": "reconstruct", **body}).encode()
            assert len(raw) > json_arrays.MIN_ARRAY_BYTES  # parsed as a NumericArray
            status, _, reply = post(port_of(server.url), raw, path=f"/v1/models/{TEST_MODEL_NAME}:predict")
            assert status == 200, reply[:300]
            # the same float32 inputs through the same graph; the reply's JSON floats round-trip float32
            # exactly, so what is left is TensorFlow's own run-to-run spread (as test_contract_limits allows)
            np.testing.assert_allclose(np.asarray(json.loads(reply)[key], np.float32), want, rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------- slow clients
def _slow_clients(port: int, request_head: bytes) -> list[socket.socket]:
    """Eight connections that stall: nothing sent, half a request line, half the headers, half a body."""
    parts = [b"", request_head[:10], request_head[:-4], request_head + b"Content-Length: 100\r\n\r\n{\"inp"]
    socks = []
    for part in parts * 2:
        sock = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT)
        if part:
            sock.sendall(part)
        socks.append(sock)
    return socks


def test_slow_clients_are_dropped_and_never_hold_more_than_the_pool():
    repo, _ = fake_repo()
    limits = Limits(max_threads=4, header_timeout_s=0.5, body_timeout_s=0.5)
    with ContractServer(repo, limits=limits) as server:
        port = port_of(server.url)
        head = b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n"
        socks = _slow_clients(port, head)
        try:
            answers = [read_until_closed(sock) for sock in socks]  # before: held open for good
        finally:
            for sock in socks:
                sock.close()
        for part, answer in zip([0, 1, 2, 3] * 2, answers):
            if part == 3:  # headers complete, body stalled: told so
                assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
            else:  # no complete request: no answer, just closed
                assert answer == b"", answer[:80]
        assert server.handler_threads <= 4
        assert post(port, b'{"inputs": {"z": [[1]]}}')[0] == 200


def test_a_client_dribbling_its_headers_is_cut_off_at_the_deadline():
    repo, _ = fake_repo()
    with ContractServer(repo, limits=Limits(header_timeout_s=0.5)) as server:
        sock = socket.create_connection(("127.0.0.1", port_of(server.url)), timeout=CLIENT_TIMEOUT)
        line = b"GET /v1/models/" + b"x" * 300 + b" HTTP/1.1\r\n"
        try:
            for i in range(len(line)):  # one byte every 50 ms: each recv gets data, the request never ends
                sock.sendall(line[i:i + 1])
                time.sleep(0.05)
            cut = False
        except (BrokenPipeError, ConnectionResetError):
            cut = True
        if not cut:
            cut = read_until_closed(sock) in (b"", b"<reset>")
        sock.close()
        assert cut


def test_demo_server_drops_slow_clients(demo_export, web_root):
    from keras_vae.serving.demo import make_server, serve_in_thread

    server = make_server(demo_export, port=0, web_root=web_root, limits=Limits(max_threads=2, header_timeout_s=0.5))
    serve_in_thread(server)
    try:
        port = server.server_address[1]
        socks = [sock for i, sock in enumerate(_slow_clients(port, b"GET /index.html HTTP/1.0\r\nHost: x\r\n"))
                 if i % 4 != 3 or sock.close()]  # the GET with complete headers is answered: not a stall
        answers = [read_until_closed(sock) for sock in socks]
        for sock in socks:
            sock.close()
        assert answers == [b""] * 6
        assert server.threads <= 2
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
        conn.request("GET", "/index.html")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        server.shutdown()
        server.server_close()


# ---------------------------------------------------------------------------------- chunked bodies
def _chunked(body: bytes, sizes=(5, 17)) -> bytes:
    out, pos = b"", 0
    for size in sizes:
        out += b"%x;ext=1\r\n%s\r\n" % (size, body[pos:pos + size])
        pos += size
    return out + b"%x\r\n%s\r\n0\r\nX-Trailer: 1\r\n\r\n" % (len(body) - pos, body[pos:])


def test_a_chunked_body_is_read_and_the_connection_stays_in_step(served):
    server, version = served
    body = json.dumps({"inputs": {"z": [[1.5, -2.0, 3.25]]}}).encode()
    sock = socket.create_connection(("127.0.0.1", port_of(server.url)), timeout=CLIENT_TIMEOUT)
    with sock:
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" % PREDICT.encode()
                     + _chunked(body)
                     + b"GET /v1/models/%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % MODEL.encode())
        (s1, r1), (s2, r2) = responses_on(sock, 2)
        assert (s1, r1) == (200, {"outputs": [[3.0, -4.0, 6.5]]})  # before: 400, then the chunks as a request
        assert s2 == 200 and "model_version_status" in r2
        assert read_until_closed(sock) == b""  # nothing else was answered
    np.testing.assert_array_equal(version.seen[-1], [[1.5, -2.0, 3.25]])


@pytest.mark.parametrize("head, body, status, message", [
    (b"Transfer-Encoding: chunked", b"zz\r\n{}\r\n0\r\n\r\n", 400, "malformed chunk size"),
    (b"Transfer-Encoding: chunked", b"2\r\n{}XX0\r\n\r\n", 400, "does not end with CRLF"),
    (b"Transfer-Encoding: chunked", b"f" * 2000 + b"\r\n", 400, "longer than 1024 bytes"),
    (b"Transfer-Encoding: chunked", b"100000\r\n", 413, "exceeds this server's limit of 4096 bytes"),
    (b"Transfer-Encoding: gzip", b"", 501, "is not supported"),
    (b"Transfer-Encoding: chunked\r\nContent-Length: 4", b"4\r\n{}{}\r\n0\r\n\r\n", 400, "both Transfer-Encoding"),
])
def test_a_bad_chunked_body_is_one_error_then_closed(head, body, status, message):
    repo, _ = fake_repo()
    with ContractServer(repo, max_request_bytes=4096) as server:
        sock = socket.create_connection(("127.0.0.1", port_of(server.url)), timeout=CLIENT_TIMEOUT)
        with sock:
            sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\n%s\r\n\r\n%s" % (PREDICT.encode(), head, body))
            answer = read_until_closed(sock)
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 %d" % status), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 1 and message.encode() in rest


# --------------------------------------------------------------------------------- bad JSON values
@pytest.mark.parametrize("name", [["a"], {"a": 1}, 5, True])
def test_a_signature_name_that_is_not_a_string_is_400(served, name):
    server, _ = served
    status, _, reply = post(port_of(server.url), json.dumps({"signature_name": name, "inputs": {"z": [[1]]}}).encode())
    assert status == 400, reply  # before: 500 TypeError: unhashable type: 'list'
    assert "'signature_name' must be a string" in json.loads(reply)["error"]


def test_row_format_with_two_outputs_and_long_rows(served):
    server, _ = served
    z = np.arange(40_000, dtype=np.float32).reshape(4, 10_000) / 7
    status, _, reply = post(port_of(server.url), json.dumps({"signature_name": "two", "instances": z.tolist()}).encode())
    assert status == 200
    rows = json.loads(reply)["predictions"]
    np.testing.assert_array_equal(np.asarray([r["a"] for r in rows], np.float32), z)
    np.testing.assert_array_equal(np.asarray([r["b"] for r in rows], np.float32), z.sum(axis=-1))


# --------------------------------------------------------------------------------- request history
def test_the_request_history_is_bounded():
    repo, _ = fake_repo()
    assert ContractServer(repo).requests.maxlen == KEEP_REQUESTS  # the default is bounded too
    with ContractServer(repo, keep_requests=20) as server:
        conn = http.client.HTTPConnection("127.0.0.1", port_of(server.url), timeout=CLIENT_TIMEOUT)
        for i in range(60):
            conn.request("GET", f"/v1/models/{MODEL}/" + "p" * 8000 + str(i))
            reply = conn.getresponse()
            reply.read()
            assert reply.status == 404
        conn.close()
        assert len(server.requests) == 20 and server.request_count == 60
        assert max(len(path) for _, path in server.requests) <= 256


# ------------------------------------------------------------------------------------- serve-demo
@pytest.fixture
def web_root(tmp_path, monkeypatch):
    """The smallest page folder make_server accepts, with the onnxruntime-web entry in a js home."""
    from keras_vae.serving.assets import JS_DIR_ENV

    root = tmp_path / "web"
    root.mkdir()
    (root / "index.html").write_text("<html>explorer</html>")
    dist = tmp_path / "js-home" / "web" / "node_modules" / "onnxruntime-web" / "dist"
    dist.mkdir(parents=True)
    (dist / "ort.wasm.bundle.min.mjs").write_text("")
    monkeypatch.setenv(JS_DIR_ENV, str(tmp_path / "js-home"))
    return root


@pytest.fixture
def demo_export(tmp_path):
    """An export folder whose decoder.onnx is 16 MiB of zeros (make_server does not verify it)."""
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "decoder.onnx").write_bytes(bytes(16 << 20))
    return folder


def test_demo_client_gone_before_the_reply_is_one_log_line(demo_export, web_root, caplog, capfd):
    from keras_vae.serving.demo import make_server, serve_in_thread

    server = make_server(demo_export, port=0, web_root=web_root)
    serve_in_thread(server)
    try:
        with caplog.at_level(logging.WARNING, logger="keras_vae.serving.httpd"):
            for _ in range(3):
                sock = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=CLIENT_TIMEOUT)
                sock.sendall(b"GET /decoder.onnx HTTP/1.0\r\n\r\n")
                sock.recv(1024)  # the reply has started
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()  # reset: the server's next write fails
            deadline = time.monotonic() + CLIENT_TIMEOUT
            while len(caplog.records) < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        server.shutdown()
        server.server_close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all("went away before the reply to GET /decoder.onnx" in m for m in lines), lines
    assert "Traceback" not in capfd.readouterr().err  # before: a BrokenPipeError traceback per client


def test_demo_answers_200_simultaneous_page_loads(demo_export, web_root):
    from keras_vae.serving.demo import make_server, serve_in_thread

    server = make_server(demo_export, port=0, web_root=web_root)
    serve_in_thread(server)
    try:
        port = server.server_address[1]

        def get(i):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT)
            try:
                conn.request("GET", "/index.html")
                reply = conn.getresponse()
                return reply.status if reply.read() == b"<html>explorer</html>" else "wrong body"
            finally:
                conn.close()

        assert at_once(200, get) == Counter({200: 200})
        assert server.threads <= Limits().max_threads
    finally:
        server.shutdown()
        server.server_close()


def test_a_body_over_the_limit_gets_413_instead_of_100_continue():
    repo, _ = fake_repo()
    with ContractServer(repo, max_request_bytes=4096) as server:
        sock = socket.create_connection(("127.0.0.1", port_of(server.url)), timeout=CLIENT_TIMEOUT)
        with sock:
            sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5000000\r\n\r\n"
                         % PREDICT.encode())
            answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 413") and b"100 Continue" not in answer, answer[:200]
