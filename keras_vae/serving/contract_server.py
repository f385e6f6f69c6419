"""A local CONTRACT-TEST server for TF Serving's REST and gRPC predict APIs. It is NOT TF Serving.

TensorFlow Serving's ``tensorflow_model_server`` cannot be installed on the machines this project
is developed and tested on, so the clients in ``serving/client.py`` are tested against this stand-in:
it loads each SavedModel version with ``tf.saved_model.load`` and calls its signatures, and speaks
the documented request/response formats (https://www.tensorflow.org/tfx/serving/api_rest):

- ``GET  /v1/models/<name>[/versions/N]``           -> ``{"model_version_status": [...]}``
- ``GET  /v1/models/<name>[/versions/N]/metadata``  -> ``{"model_spec": ..., "metadata": {"signature_def": ...}}``
- ``POST /v1/models/<name>[/versions/N]:predict``   with ``signature_name`` and either
  ``"instances"`` (row format; answer ``"predictions"``) or ``"inputs"`` (columnar; answer
  ``"outputs"``). A single-output signature answers with the bare value, several outputs with a
  dict (per row, or per name), as TF Serving does.
- errors: ``{"error": "..."}`` with 404 (unknown model, version or URL), 400 (bad JSON, unknown
  signature, missing/extra inputs, wrong shapes) and 405, with messages shaped like TF Serving's.
- limits: a body over ``max_request_bytes`` is answered 413 before it is read; a batch over
  ``max_batch`` (default ``keras_vae.export.contract.MAX_BATCH``, the exported decoder's max_batch) is 400
  before it is converted; NaN/Infinity (not JSON) and non-finite float inputs are 400. gRPC has the
  same batch and finiteness checks and refuses messages over ``max_request_bytes``.
- under load (REST; ``keras_vae.serving.httpd``): at most ``Limits.max_threads`` handler threads, a
  queue of ``Limits.max_queued`` connections and 503 + ``Retry-After`` beyond it, never a reset;
  deadlines for headers, body and reply; request bodies held at once bounded by
  ``max_inflight_bytes`` (503 + ``Retry-After`` beyond). Long arrays of numbers are parsed straight
  into NumPy and replies written in slices (``keras_vae.serving.json_arrays``), so a request costs
  about its body once more, not ten times. ``Transfer-Encoding: chunked`` bodies are read (within
  the same limits); any other transfer coding is 501 and closes the connection.

``GrpcContractServer`` does the same for ``PredictionService.Predict`` and ``GetModelMetadata``.

What it does NOT cover: batching, model version policies and hot reload, ``b64`` binary
values, ``:classify``/``:regress``, model warmup, TF Serving's own float formatting and its
performance. Passing these contract tests means the client and the SavedModel agree with the
documented API, not that a given TF Serving release accepts the model; test that with the
docker-compose kit (serving/tfserving) before going to production.

Run by hand: ``python -m keras_vae.serving.contract_server EXPORT_DIR/savedmodel/NAME [--port 8501]``.
"""
from __future__ import annotations

import collections
import json
import os
import re
import threading
import time
from pathlib import Path

import numpy as np

from keras_vae.export.contract import MAX_BATCH
from keras_vae.serving import json_arrays
from keras_vae.serving.httpd import (
    DISCONNECTS,
    BoundedHandler,
    BoundedHTTPServer,
    ByteBudget,
    Limits,
)

# 64 MiB: a batch of MAX_BATCH 64x64x3 images as JSON floats fits; the 4.4 MB request of 200k
# latents that pushed the unbounded server past 20 GB is refused by the batch limit instead
MAX_REQUEST_BYTES = 64 << 20
# request bodies held at once: two of the largest (a request costs about its body again while parsed)
MAX_INFLIGHT_BYTES = 2 * MAX_REQUEST_BYTES
KEEP_REQUESTS = 1000  # ContractServer.requests and GrpcContractServer.calls keep the latest this many
# characters of an error message sent as a gRPC status's details: they travel in the trailing metadata, which gRPC
# refuses (RESOURCE_EXHAUSTED instead of the status) with a probability that grows past its 8 KiB soft limit
MAX_GRPC_DETAILS = 2048
MAX_LOGGED_PATH = 256  # characters of a path (ContractServer.requests) or a name (GrpcContractServer.calls) kept
STREAM_AFTER = 1 << 20  # replies longer than this are sent in pieces (chunked), not built whole
MAX_CHUNK_LINE = 1024  # a chunk-size line (with extensions) or a trailer line of a chunked body
MAX_TRAILERS = 32

__all__ = ["ContractError", "ContractServer", "GrpcContractServer", "ModelRepository"]


class ContractError(Exception):
    """A request error with the HTTP status and gRPC code TF Serving would use."""

    def __init__(self, status: int, message: str, grpc_code: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.grpc_code = grpc_code


def _not_found(msg):
    return ContractError(404, msg, "NOT_FOUND")


def _invalid(msg):
    return ContractError(400, msg, "INVALID_ARGUMENT")


class _Version:
    """One loaded SavedModel version: its callable signatures and their SignatureDefs."""

    def __init__(self, path: Path):
        import tensorflow as tf
        from tensorflow.core.protobuf import saved_model_pb2

        self.path = path
        self.loaded = tf.saved_model.load(str(path))
        sm = saved_model_pb2.SavedModel()
        sm.ParseFromString((path / "saved_model.pb").read_bytes())
        meta = next(m for m in sm.meta_graphs if "serve" in m.meta_info_def.tags)
        self.signature_defs = {k: v for k, v in meta.signature_def.items() if not k.startswith("__")}
        self.functions = dict(self.loaded.signatures)

    def run(self, signature: str, inputs: dict, max_batch: int | None = None) -> dict:
        import tensorflow as tf

        if signature not in self.functions:
            raise _invalid(f'Serving signature name: "{signature}" not found in signature def')
        sig = self.signature_defs[signature]
        expected = set(sig.inputs)
        missing, extra = sorted(expected - set(inputs)), sorted(set(inputs) - expected)
        if missing or extra:
            raise _invalid(f"Input keys mismatch for signature {signature}: expected "
                           f"{sorted(expected)}, missing {missing}, unexpected {extra}")
        fn = self.functions[signature]
        specs = fn.structured_input_signature[1]
        tensors = {}
        for name, value in inputs.items():
            spec = specs[name]
            _check_batch(name, value, max_batch)  # before conversion: a huge list must not be materialised
            if spec.dtype.is_integer:  # np.asarray would truncate 1.5 to 1 without a word
                _check_integers(name, value, spec.dtype.name)
            try:
                with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, refused below
                    arr = np.asarray(value, dtype=spec.dtype.as_numpy_dtype)
            except (ValueError, TypeError, OverflowError, RecursionError) as e:
                raise _invalid(f"input '{name}' could not be converted to {spec.dtype.name}: "
                               f"{str(e).splitlines()[0][:200] if str(e) else type(e).__name__}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise _invalid(f"input '{name}' contains NaN or Infinity; send finite numbers")
            if not spec.shape.is_compatible_with(arr.shape):
                raise _invalid(f"input '{name}' has shape {list(arr.shape)}, signature "
                               f"{signature} expects {spec.shape.as_list()}")
            tensors[name] = tf.constant(arr)
        batches = {t.shape[0] for t in tensors.values() if t.shape.rank}  # scalars (sample's n, seed) have none
        if len(batches) > 1:
            raise _invalid(f"inputs have different batch sizes {sorted(batches)}")
        try:
            out = fn(**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            raise _invalid(graph_error_message(e))
        return {k: v.numpy() for k, v in out.items()}


# "assertion failed: [MESSAGE] [Condition x <= y ...] [x (n:0) = ] [VALUE] [y ...]" inside a graph error (MESSAGE
# may hold brackets itself)
_ASSERTION = re.compile(r"assertion failed: \[(?P<message>[^\n]*?)\](?: \[Condition [^\n]*?\[x \((?P<input>[^:)]*)"
                        r"[^)]*\) = \] \[(?P<value>[^\]]*)\]| *(?:\n|$))")


def graph_error_message(error: Exception) -> str:
    """One line a client can act on from a signature's error: a failed assertion's own message (the sample
    signatures' bounds on n and seed, which name the input) with the value sent; otherwise the first line
    of the error that is not TensorFlow's "Graph execution error:" / "Detected at node" preamble."""
    text = getattr(error, "message", None) or str(error)
    found = _ASSERTION.search(text)
    if found:
        got = f"; got {found['input']} = {found['value']}" if found["value"] is not None else ""
        return f"{found['message']}{got}"
    preamble = ("Graph execution error:", "Detected at node", "<stack traces unavailable>", "File ")
    lines = [line.strip() for line in text.splitlines()]
    useful = [line for line in lines if line and not line.startswith(preamble)]
    return (useful or lines or [type(error).__name__])[0][:500]


def _check_integers(name: str, value, dtype: str) -> None:
    """400 unless every value of an integer input is a JSON integer (TF Serving refuses 1.5 and 2.0 for int32;
    np.asarray would silently truncate them); ndarrays (gRPC) must have an integer dtype."""
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    if kind is not None:
        if kind not in "iu":
            raise _invalid(f"input '{name}' must hold integers ({dtype}), got an array of {value.dtype}")
        return
    if isinstance(value, json_arrays.NumericArray):  # a long array, still text: its values must be whole
        numbers = np.asarray(value, np.float64)
        if not np.all(np.floor(numbers) == numbers):
            raise _invalid(f"input '{name}' must hold integers ({dtype}), got numbers with a fraction")
        return
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, bool) or not isinstance(item, int):
            raise _invalid(f"input '{name}' must be an integer ({dtype}), got {json.dumps(item)[:40]}")


def _check_batch(name: str, value, max_batch: int | None) -> None:
    """400 when the input's leading dimension (its batch) exceeds ``max_batch``."""
    if max_batch is None:
        return
    shape = getattr(value, "shape", None)  # an ndarray, or a json_arrays.NumericArray not parsed yet
    batch = shape[0] if isinstance(shape, tuple) and shape else \
        len(value) if isinstance(value, list) else None
    if batch is not None and batch > max_batch:
        raise _invalid(f"input '{name}' has batch size {batch}, more than this server's max_batch "
                       f"{max_batch}: split the request")


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (use finite numbers)")


class ModelRepository:
    """Models by name, each a base path holding integer version directories (TF Serving's layout).

    Every version directory with a ``saved_model.pb`` is loaded; ``version=None`` means the highest.
    """

    def __init__(self, models: dict):
        self.models = {}
        for name, base in models.items():
            base = Path(base)
            versions = {int(p.name): p for p in base.iterdir()
                        if p.is_dir() and p.name.isdigit() and (p / "saved_model.pb").is_file()} \
                if base.is_dir() else {}
            if not versions:
                raise FileNotFoundError(f"no SavedModel version directories under {base}")
            self.models[name] = {v: _Version(p) for v, p in sorted(versions.items())}

    def get(self, name: str, version: int | None = None) -> tuple:
        if name not in self.models:
            what = f"Latest({name})" if version is None else f"Specific({name}, {version})"
            raise _not_found(f"Servable not found for request: {what}")
        versions = self.models[name]
        if version is None:
            version = max(versions)
        if version not in versions:
            raise _not_found(f"Servable not found for request: Specific({name}, {version})")
        return version, versions[version]

    def status(self, name: str, version: int | None) -> dict:
        if version is None:
            if name not in self.models:
                raise _not_found(f"Could not find any versions of model {name}")
            versions = sorted(self.models[name], reverse=True)
        else:
            versions = [self.get(name, version)[0]]
        return {"model_version_status": [
            {"version": str(v), "state": "AVAILABLE",
             "status": {"error_code": "OK", "error_message": ""}} for v in versions]}

    def metadata(self, name: str, version: int | None) -> dict:
        from google.protobuf import json_format
        from tensorflow_serving.apis import get_model_metadata_pb2

        v, loaded = self.get(name, version)
        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for k, sig in loaded.signature_defs.items():
            sig_map.signature_def[k].CopyFrom(sig)
        return {"model_spec": {"name": name, "signature_name": "", "version": str(v)},
                "metadata": {"signature_def": json_format.MessageToDict(
                    sig_map, preserving_proto_field_name=True)}}


# --------------------------------------------------------------------------------------------- REST
_URL = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?"
                  r"(?P<rest>/metadata|:predict|:classify|:regress)?$")


def _rows_to_columns(instances, input_names):
    if isinstance(instances, json_arrays.NumericArray):  # rows of numbers, still as text
        instances_are_rows = False
    elif not isinstance(instances, list) or not instances:
        raise _invalid("'instances' must be a non-empty list")
    else:
        instances_are_rows = isinstance(instances[0], dict)
    if instances_are_rows:
        for row in instances:
            if not isinstance(row, dict) or set(row) != set(instances[0]):
                raise _invalid("every instance must be an object with the same keys")
        return {k: [row[k] for row in instances] for k in instances[0]}
    if len(input_names) != 1:
        raise _invalid(f"instances without names need a single-input signature; this one takes "
                       f"{sorted(input_names)}")
    return {input_names[0]: instances}


def _predict_json(repo: ModelRepository, name, version, body: dict, max_batch: int | None = None) -> dict:
    if not isinstance(body, dict):
        raise _invalid("JSON request body must be an object")
    has_rows, has_cols = "instances" in body, "inputs" in body
    if has_rows == has_cols:
        raise _invalid("JSON Value must have exactly one of 'instances' (row format) or "
                       "'inputs' (columnar format)")
    signature = body.get("signature_name") or "serving_default"
    if not isinstance(signature, str):
        raise _invalid(f"'signature_name' must be a string, got {type(signature).__name__}: "
                       f"{json.dumps(signature)[:80]}")
    _, loaded = repo.get(name, version)
    if signature not in loaded.signature_defs:
        raise _invalid(f'Serving signature name: "{signature}" not found in signature def')
    input_names = sorted(loaded.signature_defs[signature].inputs)
    if has_rows:
        inputs = _rows_to_columns(body["instances"], input_names)
    else:
        cols = body["inputs"]
        if isinstance(cols, dict):
            inputs = cols
        elif len(input_names) == 1:
            inputs = {input_names[0]: cols}
        else:
            raise _invalid("unnamed 'inputs' need a single-input signature")
    out = loaded.run(signature, inputs, max_batch=max_batch)
    # arrays, not lists: _Handler._reply writes them a slice at a time (json_arrays.iter_json)
    if has_rows:
        if len(out) == 1:
            return {"predictions": next(iter(out.values()))}
        return {"predictions": json_arrays.Rows(out)}
    if len(out) == 1:
        return {"outputs": next(iter(out.values()))}
    return {"outputs": out}


class _Handler(BoundedHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    _reserved = 0  # bytes of ByteBudget this request holds
    _replying = False  # the status line of this request's reply is on its way

    def log_message(self, fmt, *args):  # quiet; tests read server.requests instead
        pass

    def handle_expect_100(self) -> bool:
        header = (self.headers.get("Content-Length") or "").strip()
        if header.isascii() and header.isdigit() and int(header) > self.server.owner.max_request_bytes:
            return True  # no "100 Continue": the 413 comes instead, so the client need not send its body
        return super().handle_expect_100()

    def _reply(self, status: int, payload, retry_after: int | None = None):
        """``payload`` as JSON: with Content-Length when short, else in pieces (chunked on HTTP/1.1)."""
        pieces = json_arrays.iter_json(payload)
        head, size = [], 0
        for piece in pieces:
            head.append(piece)
            size += len(piece)
            if size > STREAM_AFTER:
                break
        else:
            pieces = None  # all of it is in head
        chunked = pieces is not None and self.request_version == "HTTP/1.1"
        self._replying = True
        if pieces is not None and not chunked:
            self.close_connection = True  # HTTP/1.0: the reply ends where the connection does
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        if pieces is None:
            self.send_header("Content-Length", str(size))
        elif chunked:
            self.send_header("Transfer-Encoding", "chunked")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        for piece in head if pieces is None else _chain(head, pieces):
            if chunked:
                self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                self.wfile.write(piece)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _refuse(self, status: int, message: str, retry_after: int | None = None) -> None:
        """Answer an error before the body is read, and close (the body's end is unknown or not wanted)."""
        self.close_connection = True
        self._reply(status, {"error": message}, retry_after)

    def _reserve(self, n: int) -> bool:
        """Hold ``n`` more body bytes in the server's budget; False (503 sent) when they do not fit."""
        budget = self.server.owner.budget
        if budget.try_reserve(n):
            self._reserved += n
            return True
        self._refuse(503, f"the server holds {budget.reserved} bytes of request bodies, its limit is "
                          f"{budget.capacity}: retry after {self.server.limits.retry_after_s} s",
                     retry_after=self.server.limits.retry_after_s)
        return False

    def _read_body(self) -> bytes | bytearray | None:
        """The request body (Content-Length or chunked), or None when an error reply was sent instead."""
        owner = self.server.owner
        coding, header = self.headers.get("Transfer-Encoding"), self.headers.get("Content-Length")
        if coding is not None:
            if header is not None:
                return self._refuse(400, "the request has both Transfer-Encoding and Content-Length: send one")
            if coding.strip().lower() != "chunked":
                return self._refuse(501, f"Transfer-Encoding {coding[:40]!r} is not supported: send "
                                         "Content-Length or Transfer-Encoding: chunked")
            return self._read_chunked()
        header = (header or "0").strip()
        if not (header.isascii() and header.isdigit()):
            return self._refuse(400, f"Content-Length {header[:40]!r} is not a byte count")
        length = int(header)
        if length > owner.max_request_bytes:  # the body is not read
            return self._refuse(413, _too_large(length, owner.max_request_bytes))
        if not self._reserve(length):
            return None
        self.start_body()
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:
            raise ConnectionAbortedError("the client closed the connection in the middle of its body")
        return raw

    def _read_chunked(self) -> bytearray | None:
        owner = self.server.owner
        body = bytearray()
        self.start_body()
        while True:
            line = self._chunk_line()
            if line is None:
                return None
            size_text = line.split(b";", 1)[0].strip()
            if not size_text or size_text.strip(b"0123456789abcdefABCDEF") or len(size_text) > 16:
                return self._refuse(400, f"malformed chunk size {bytes(size_text[:20])!r} in a chunked body")
            size = int(size_text, 16)
            if size == 0:
                break
            if len(body) + size > owner.max_request_bytes:
                return self._refuse(413, _too_large(len(body) + size, owner.max_request_bytes))
            if not self._reserve(size):
                return None
            data = self.rfile.read(size)
            if len(data) < size:
                raise ConnectionAbortedError("the client closed the connection in the middle of its body")
            body += data
            if self.rfile.read(2) != b"\r\n":
                return self._refuse(400, "a chunk of the chunked body does not end with CRLF")
        for _ in range(MAX_TRAILERS + 1):  # the trailer section ends with an empty line
            line = self._chunk_line()
            if line is None:
                return None
            if not line.strip():
                return body
        return self._refuse(400, f"more than {MAX_TRAILERS} trailer lines after a chunked body")

    def _chunk_line(self) -> bytes | None:
        line = self.rfile.readline(MAX_CHUNK_LINE + 1)
        if not line:
            raise ConnectionAbortedError("the client closed the connection in the middle of its body")
        if not line.endswith(b"\n"):
            return self._refuse(400, f"a line of the chunked body is longer than {MAX_CHUNK_LINE} bytes")
        return line

    def _handle(self, method: str):
        owner = self.server.owner
        self._replying = False
        with owner._lock:
            owner.requests.append((method, self.path[:MAX_LOGGED_PATH]))
            owner.request_count += 1
            over = owner.max_requests is not None and owner.request_count > owner.max_requests
        try:
            try:
                raw = self._read_body()
            except TimeoutError:
                return self._refuse(408, f"the request body did not arrive within "
                                         f"{self.server.limits.body_timeout_s:g} s")
            if raw is None:
                return None  # answered (and closing)
            if over:
                return self._reply(503, {"error": f"contract server request limit "
                                                  f"({owner.max_requests}) reached"})
            return self._answer(method, raw)
        finally:
            owner.budget.release(self._reserved)
            self._reserved = 0

    def _answer(self, method: str, raw):
        owner = self.server.owner
        m = _URL.match(self.path)
        try:
            if m is None:
                raise _not_found(f"Malformed request: {method} {self.path[:MAX_LOGGED_PATH]}")
            name, rest = m["name"], m["rest"] or ""
            version = int(m["version"]) if m["version"] else None
            if rest in (":classify", ":regress"):
                raise _invalid(f"{rest[1:]} is not implemented by the contract server")
            if rest == ":predict":
                if method != "POST":
                    raise ContractError(405, f"Method {method} not allowed for {self.path}", "")
                if owner.delay_s:
                    time.sleep(owner.delay_s)
                try:
                    body = json_arrays.loads(raw or b"null", parse_constant=_reject_constant)
                except (ValueError, RecursionError) as e:
                    raise _invalid(f"JSON Parse error: {str(e)[:200]}")
                result = _predict_json(owner.repo, name, version, body, owner.max_batch)
                raw = body = None  # the body's text and arrays can go before the reply is written
                return self._reply(200, result)
            if method != "GET":
                raise ContractError(405, f"Method {method} not allowed for {self.path}", "")
            if rest == "/metadata":
                return self._reply(200, owner.repo.metadata(name, version))
            return self._reply(200, owner.repo.status(name, version))
        except ContractError as e:
            return self._reply(e.status, {"error": e.message})
        except DISCONNECTS:
            raise  # the client went away or stalled: nobody to answer
        except Exception as e:  # a bug here must still answer, not hang the client
            if self._replying:  # too late for a status: cut the reply short
                self.close_connection = True
                raise
            return self._reply(500, {"error": f"{type(e).__name__}: {e}"})

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def do_PUT(self):
        self._handle("PUT")


def _chain(first, rest):
    yield from first
    yield from rest


def _too_large(length: int, limit: int) -> str:
    return f"request body of {length} bytes exceeds this server's limit of {limit} bytes: send smaller batches"


class _HTTPServer(BoundedHTTPServer):
    owner: ContractServer


class ContractServer:
    """TF Serving's REST API over ``tf.saved_model.load`` on ``host:port`` (a contract test, not TF Serving).

    ``models``: ``{name: base_path}`` or a ``ModelRepository``. ``port=0`` picks a free port (see
    ``url``). ``delay_s`` sleeps before each predict (to test client timeouts); ``max_requests``
    answers 503 after that many requests. ``requests`` holds ``(method, path)`` of the latest
    ``keep_requests`` requests (paths cut to 256 characters); ``request_count`` counts them all.
    ``max_request_bytes`` (413 above it) and ``max_batch`` (400 above it) bound one request;
    ``max_inflight_bytes`` the request bodies held at once (503 + Retry-After beyond it; at least
    ``max_request_bytes``); ``limits`` (``keras_vae.serving.httpd.Limits``) threads, queue and deadlines.
    Use as a context manager, or ``start()``/``stop()``.
    """

    def __init__(self, models, host: str = "127.0.0.1", port: int = 0, delay_s: float = 0.0,
                 max_requests: int | None = None, max_batch: int = MAX_BATCH,
                 max_request_bytes: int = MAX_REQUEST_BYTES, max_inflight_bytes: int | None = None,
                 limits: Limits | None = None, keep_requests: int = KEEP_REQUESTS):
        _check_limits(max_batch, max_request_bytes)
        inflight = max(MAX_INFLIGHT_BYTES, int(max_request_bytes)) if max_inflight_bytes is None \
            else max_inflight_bytes
        if isinstance(inflight, bool) or not isinstance(inflight, int) or inflight < max_request_bytes:
            raise ValueError(f"max_inflight_bytes must be an integer >= max_request_bytes "
                             f"({max_request_bytes}), got {inflight!r}")
        if isinstance(keep_requests, bool) or not isinstance(keep_requests, int) or keep_requests < 0:
            raise ValueError(f"keep_requests must be an integer >= 0, got {keep_requests!r}")
        self.repo = models if isinstance(models, ModelRepository) else ModelRepository(models)
        self.delay_s = delay_s
        self.max_requests = max_requests
        self.max_batch, self.max_request_bytes = int(max_batch), int(max_request_bytes)
        self.budget = ByteBudget(inflight)
        self.requests: collections.deque = collections.deque(maxlen=keep_requests)
        self.request_count = 0
        self._lock = threading.Lock()
        self._httpd = _HTTPServer((host, port), _Handler, limits=limits, label="contract server")
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def handler_threads(self) -> int:
        """How many handler threads exist now (at most ``limits.max_threads``)."""
        return self._httpd.threads

    def start(self) -> ContractServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="contract-rest")
        self._thread.start()
        return self

    def stop(self):
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _check_limits(max_batch, max_request_bytes) -> None:
    for label, value in (("max_batch", max_batch), ("max_request_bytes", max_request_bytes)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{label} must be an integer >= 1, got {value!r}")


# --------------------------------------------------------------------------------------------- gRPC
class GrpcContractServer:
    """TF Serving's ``PredictionService`` (Predict, GetModelMetadata) over the same repository.

    A contract test, not TF Serving. Binds ``host:port`` (port 0 picks one; see ``target``). ``calls`` holds
    ``(rpc, model, signature)`` of the latest ``keep_calls`` RPCs; ``call_count`` counts them all.
    """

    def __init__(self, models, host: str = "127.0.0.1", port: int = 0, max_workers: int = 4,
                 delay_s: float = 0.0, max_batch: int = MAX_BATCH, max_request_bytes: int = MAX_REQUEST_BYTES,
                 keep_calls: int = KEEP_REQUESTS):
        from concurrent import futures

        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import (
            get_model_metadata_pb2,
            predict_pb2,
            prediction_service_pb2_grpc,
        )

        _check_limits(max_batch, max_request_bytes)
        if isinstance(keep_calls, bool) or not isinstance(keep_calls, int) or keep_calls < 0:
            raise ValueError(f"keep_calls must be an integer >= 0, got {keep_calls!r}")
        self.repo = models if isinstance(models, ModelRepository) else ModelRepository(models)
        self.delay_s = delay_s
        self.max_batch, self.max_request_bytes = int(max_batch), int(max_request_bytes)
        self.calls: collections.deque = collections.deque(maxlen=keep_calls)
        self.call_count = 0
        self._lock = threading.Lock()
        repo, owner = self.repo, self

        def abort(context, e: ContractError):
            message = e.message if len(e.message) <= MAX_GRPC_DETAILS else e.message[:MAX_GRPC_DETAILS - 3] + "..."
            context.abort(getattr(grpc.StatusCode, e.grpc_code or "INVALID_ARGUMENT"), message)

        def spec_of(model_spec):
            return model_spec.name, (model_spec.version.value if model_spec.HasField("version") else None)

        class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
            def Predict(self, request, context):
                owner._log("Predict", request.model_spec.name, request.model_spec.signature_name)
                if owner.delay_s:
                    time.sleep(owner.delay_s)
                name, version = spec_of(request.model_spec)
                signature = request.model_spec.signature_name or "serving_default"
                try:
                    v, loaded = repo.get(name, version)
                    for k, t in request.inputs.items():  # the batch before the tensor is materialised
                        if t.tensor_shape.dim and t.tensor_shape.dim[0].size > owner.max_batch:
                            raise _invalid(f"input '{k}' has batch size {t.tensor_shape.dim[0].size}, more than "
                                           f"this server's max_batch {owner.max_batch}: split the request")
                    try:
                        inputs = {k: tf.make_ndarray(t) for k, t in request.inputs.items()}
                    except (ValueError, TypeError) as e:
                        raise _invalid(f"malformed TensorProto: {str(e)[:200]}")
                    out = loaded.run(signature, inputs, max_batch=owner.max_batch)
                except ContractError as e:
                    abort(context, e)
                resp = predict_pb2.PredictResponse()
                resp.model_spec.name = name
                resp.model_spec.version.value = v
                resp.model_spec.signature_name = signature
                for k, arr in out.items():
                    resp.outputs[k].CopyFrom(tf.make_tensor_proto(arr))
                return resp

            def GetModelMetadata(self, request, context):
                owner._log("GetModelMetadata", request.model_spec.name, "")
                name, version = spec_of(request.model_spec)
                if list(request.metadata_field) != ["signature_def"]:
                    context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                  "Metadata field signature_def is the only supported field")
                try:
                    v, loaded = repo.get(name, version)
                except ContractError as e:
                    abort(context, e)
                sig_map = get_model_metadata_pb2.SignatureDefMap()
                for k, sig in loaded.signature_defs.items():
                    sig_map.signature_def[k].CopyFrom(sig)
                resp = get_model_metadata_pb2.GetModelMetadataResponse()
                resp.model_spec.name = name
                resp.model_spec.version.value = v
                resp.metadata["signature_def"].Pack(sig_map)
                return resp

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers),
                                   options=[("grpc.max_receive_message_length", self.max_request_bytes)])
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), self._server)
        self.port = self._server.add_insecure_port(f"{host}:{port}")
        self.host = host

    def _log(self, rpc: str, model: str, signature: str) -> None:
        with self._lock:  # handlers run in a thread pool
            self.calls.append((rpc, model[:MAX_LOGGED_PATH], signature[:MAX_LOGGED_PATH]))
            self.call_count += 1

    @property
    def target(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> GrpcContractServer:
        self._server.start()
        return self

    def stop(self):
        self._server.stop(grace=None).wait(5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    """``python -m keras_vae.serving.contract_server BASE_PATH [--name NAME] [--port 8501] [--grpc-port 8500]``."""
    import argparse

    from keras_vae.utils.validation import port_type

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base_path", help="EXPORT_DIR/savedmodel/<name> (holds version directories)")
    p.add_argument("--name", help="model name (default: the base path's folder name)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=port_type, default=8501)
    p.add_argument("--grpc-port", type=port_type, default=None)
    p.add_argument("--max-batch", type=int, default=MAX_BATCH, help="largest batch one request may carry")
    p.add_argument("--max-request-bytes", type=int, default=MAX_REQUEST_BYTES, help="largest request body")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    name = args.name or Path(args.base_path).resolve().name
    repo = ModelRepository({name: args.base_path})
    rest = ContractServer(repo, args.host, args.port, max_batch=args.max_batch,
                          max_request_bytes=args.max_request_bytes).start()
    grpc_server = GrpcContractServer(repo, args.host, args.grpc_port, max_batch=args.max_batch,
                                     max_request_bytes=args.max_request_bytes).start() \
        if args.grpc_port is not None else None
    print(f"contract server (not TF Serving) for model {name!r}: REST {rest.url}"
          + (f", gRPC {grpc_server.target}" if grpc_server else ""), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        rest.stop()
        if grpc_server:
            grpc_server.stop()


if __name__ == "__main__":
    main()
