"""Python clients for a keras-vae SavedModel served by TensorFlow Serving (REST and gRPC).

``TFServingClient`` speaks the REST predict API (``POST /v1/models/<name>[/versions/N]:predict``,
row "instances" and columnar "inputs" formats) with the standard library only; importing this
module never imports TensorFlow. ``TFServingGrpcClient`` speaks ``PredictionService`` over gRPC;
it needs ``tensorflow-serving-api`` (whose protos import TensorFlow) and imports it on construction.

Both clients read the model's signature metadata once (``GET .../metadata`` or
``GetModelMetadata``) and check every request against it before sending: the signature exists,
the input names, ranks and non-batch dimensions match (latent size, image H, W, C), values are
finite. Responses come back as NumPy arrays with the signature's dtypes (float32 images in [0, 1],
uint8 images, float32 ``mean``/``log_variance``). ``sample(n, seed)`` calls the ``sample`` /
``sample_uint8`` signatures, whose inputs are scalars (``n`` int32, ``seed`` int64): REST sends them
in the columnar format (``{"inputs": {"n": 16, "seed": 7}}``; the row format cannot carry scalars),
gRPC as 0-d tensors. A class-conditional export's signatures also take ``label`` (int32: one per row for
decode/encode/reconstruct, a scalar for sample): every method takes ``label=`` (one integer, or one per row),
which the metadata makes required for such a model and refused for an unconditional one; the server checks
its range. Every failure raises a ``TFServingError``
(a ``keras_vae.errors.KerasVAEError``) that says what went wrong and where.
"""
from __future__ import annotations

import json
import math
import numbers
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

import numpy as np

from keras_vae.errors import KerasVAEError
from keras_vae.export import contract

__all__ = [
    "InputShapeError",
    "SignatureInfo",
    "SignatureNotFoundError",
    "TFServingClient",
    "TFServingConnectionError",
    "TFServingError",
    "TFServingGrpcClient",
    "TFServingServerError",
    "TFServingTimeoutError",
    "TensorInfo",
]


_sleep = time.sleep  # the retry backoff's wait (one name to replace in tests)


# ----------------------------------------------------------------------------------------- errors
class TFServingError(KerasVAEError):
    """Base class of every error raised by the TF Serving clients."""


class TFServingServerError(TFServingError):
    """The server answered with an error: ``status`` is the HTTP status (REST) or the gRPC code name."""

    def __init__(self, message: str, status, server_message: str):
        super().__init__(message)
        self.status = status
        self.server_message = server_message


class TFServingConnectionError(TFServingError, ConnectionError):
    """The server could not be reached (refused, DNS, reset) or gave no parsable answer. ``transient``: the
    connection was refused or reset, or gRPC said UNAVAILABLE (a restarting server), which the clients retry."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


class TFServingTimeoutError(TFServingConnectionError, TimeoutError):
    """The server did not answer within the client's ``timeout``."""


class SignatureNotFoundError(TFServingError, LookupError):
    """The requested signature is not in the model's metadata."""


class InputShapeError(TFServingError, ValueError):
    """An input (or a response) does not match the signature: name, rank, dimensions or values."""


# ------------------------------------------------------------------------------ signature metadata
# DataType enum names (tensorflow/core/framework/types.proto) -> NumPy dtypes, and their numbers.
_DTYPES = {
    "DT_FLOAT": np.float32,
    "DT_DOUBLE": np.float64,
    "DT_HALF": np.float16,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_UINT8": np.uint8,
    "DT_INT8": np.int8,
    "DT_INT16": np.int16,
    "DT_UINT16": np.uint16,
    "DT_BOOL": np.bool_,
}
_DTYPE_ENUM = {"DT_FLOAT": 1, "DT_DOUBLE": 2, "DT_INT32": 3, "DT_UINT8": 4, "DT_INT16": 5,
               "DT_INT8": 6, "DT_INT64": 9, "DT_BOOL": 10, "DT_UINT16": 17, "DT_HALF": 19}
_ENUM_DTYPE = {v: k for k, v in _DTYPE_ENUM.items()}

# Signatures and input names this package exports (export/contract.py), used when a server gives
# no metadata (``validate=False``).
_CONTRACT_INPUTS = {
    "serving_default": contract.LATENT_INPUT,
    "decode_uint8": contract.LATENT_INPUT,
    "encode": contract.IMAGE_INPUT,
    "reconstruct": contract.IMAGE_INPUT,
}
_CONTRACT_OUTPUTS = {
    "serving_default": {contract.IMAGE_OUTPUT: "DT_FLOAT"},
    "decode_uint8": {contract.IMAGE_OUTPUT: "DT_UINT8"},
    "encode": {contract.MEAN_OUTPUT: "DT_FLOAT", contract.LOG_VARIANCE_OUTPUT: "DT_FLOAT"},
    "reconstruct": {contract.IMAGE_OUTPUT: "DT_FLOAT"},
    "sample": {contract.IMAGE_OUTPUT: "DT_FLOAT", contract.LATENT_OUTPUT: "DT_FLOAT"},
    "sample_uint8": {contract.IMAGE_OUTPUT: "DT_UINT8", contract.LATENT_OUTPUT: "DT_FLOAT"},
}
_SAMPLE_INPUTS = {contract.SAMPLE_N_INPUT: np.int32, contract.SAMPLE_SEED_INPUT: np.int64}
SEED_LIMIT = 2 ** 32  # the portable noise takes seeds in [0, 2^32)


@dataclass(frozen=True)
class TensorInfo:
    """One named signature tensor: dtype name (``"DT_FLOAT"``) and shape (``-1`` = any, None = unknown rank)."""

    dtype: str
    shape: tuple | None

    @property
    def np_dtype(self):
        if self.dtype not in _DTYPES:
            raise TFServingError(f"dtype {self.dtype} is not supported by this client "
                                 f"(supported: {', '.join(sorted(_DTYPES))})")
        return np.dtype(_DTYPES[self.dtype])


@dataclass(frozen=True)
class SignatureInfo:
    """A signature's named inputs and outputs as the server's metadata lists them."""

    name: str
    inputs: dict
    outputs: dict


def _tensor_info_from_json(d: dict) -> TensorInfo:
    shape = d.get("tensor_shape") or {}
    if shape.get("unknown_rank"):
        dims = None
    else:
        dims = tuple(int(dim.get("size", -1)) for dim in shape.get("dim", []))
    return TensorInfo(dtype=d.get("dtype", "DT_INVALID"), shape=dims)


def parse_signature_defs(signature_defs: dict) -> dict:
    """``{"sig": {"inputs": {...}, "outputs": {...}}}`` (TF Serving's JSON) -> ``{name: SignatureInfo}``."""
    result = {}
    for sig_name, sig in signature_defs.items():
        if sig_name.startswith("__"):  # __saved_model_init_op is not callable
            continue
        result[sig_name] = SignatureInfo(
            name=sig_name,
            inputs={k: _tensor_info_from_json(v) for k, v in (sig.get("inputs") or {}).items()},
            outputs={k: _tensor_info_from_json(v) for k, v in (sig.get("outputs") or {}).items()},
        )
    return result


def _fmt_shape(shape) -> str:
    return "[" + ", ".join("batch" if i == 0 and d == -1 else ("?" if d == -1 else str(d))
                           for i, d in enumerate(shape)) + "]"


# ----------------------------------------------------------------------------- shared client logic
class _BaseClient:
    """Signature lookup, input validation and the keras-vae methods; subclasses do the transport."""

    model: str
    version: int | None
    validate: bool

    def __init__(self, model: str, version: int | None, timeout: float, validate: bool):
        if not model or "/" in model:
            raise TFServingError(f"invalid model name {model!r}")
        if version is not None and (isinstance(version, bool) or not isinstance(version, numbers.Integral)
                                    or version < 0):
            raise TFServingError(f"version must be a non-negative integer or None, got {version!r}")
        if not timeout or timeout <= 0:
            raise TFServingError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.model = model
        self.version = None if version is None else int(version)
        self.timeout = float(timeout)
        self.validate = validate
        self._signatures: dict | None = None

    # -- retries
    def _retry_options(self, retries: int, backoff: float) -> None:
        """Check and keep ``retries`` (an integer >= 0) and ``backoff`` (seconds >= 0)."""
        if isinstance(retries, bool) or not isinstance(retries, numbers.Integral) or retries < 0:
            raise TFServingError(f"retries must be a non-negative integer, got {retries!r}")
        if isinstance(backoff, bool) or not isinstance(backoff, numbers.Real) or not math.isfinite(backoff) \
                or backoff < 0:
            raise TFServingError(f"backoff must be a non-negative number of seconds, got {backoff!r}")
        self.retries, self.backoff = int(retries), float(backoff)

    def _transient(self, error: TFServingError) -> bool:
        """Whether ``error`` is worth sending the same request again (subclasses)."""
        return False

    def _with_retries(self, send):
        """``send()``, called again after ``backoff`` x 1, 2, 4, ... seconds while it raises a transient error,
        at most ``retries`` more times; the error raised after a retry says how many attempts were made."""
        for attempt in range(self.retries + 1):
            try:
                return send()
            except TFServingError as error:
                transient = not isinstance(error, TFServingTimeoutError) and self._transient(error)
                if not transient or attempt == self.retries:
                    if attempt:
                        error.args = (f"{error.args[0]} (after {attempt + 1} attempts)",)
                    raise
                _sleep(self.backoff * 2 ** attempt)
        raise AssertionError("unreachable")

    # -- transport (subclasses)
    def _fetch_signatures(self) -> dict:
        raise NotImplementedError

    def _send(self, signature: str, arrays: dict, format: str) -> dict:
        raise NotImplementedError

    # -- metadata
    def signatures(self, refresh: bool = False) -> dict:
        """``{name: SignatureInfo}`` from the server's model metadata (fetched once, cached)."""
        if self._signatures is None or refresh:
            self._signatures = self._fetch_signatures()
        return self._signatures

    def _signature(self, signature: str) -> SignatureInfo | None:
        if not self.validate:
            return None
        sigs = self.signatures()
        if signature not in sigs:
            raise SignatureNotFoundError(
                f"model {self.model!r} has no signature {signature!r}; "
                f"it has: {', '.join(sorted(sigs)) or '(none)'}")
        return sigs[signature]

    def _spec(self) -> str:
        return self.model + ("" if self.version is None else f" version {self.version}")

    # -- validation
    def _prepare(self, signature: str, inputs, info: SignatureInfo | None) -> dict:
        """Name, cast and check the inputs against the signature; returns ``{name: ndarray}``."""
        if isinstance(inputs, dict):
            named = dict(inputs)
        else:
            if info is not None:
                if len(info.inputs) != 1:
                    raise InputShapeError(
                        f"signature {signature!r} takes inputs {sorted(info.inputs)}: pass a dict")
                (input_name,) = info.inputs
            elif signature in _CONTRACT_INPUTS:
                input_name = _CONTRACT_INPUTS[signature]
            else:
                raise InputShapeError(f"pass a dict of named inputs for signature {signature!r} "
                                      "(no metadata to name a single array)")
            named = {input_name: inputs}
        if info is not None:
            missing = sorted(set(info.inputs) - set(named))
            extra = sorted(set(named) - set(info.inputs))
            if missing or extra:
                raise InputShapeError(
                    f"signature {signature!r} takes inputs {sorted(info.inputs)}; "
                    f"missing {missing}, unexpected {extra}")
        arrays = {}
        batch = None
        for name, value in named.items():
            tinfo = info.inputs[name] if info is not None else None
            dtype = tinfo.np_dtype if tinfo is not None else np.float32
            try:
                arr = np.asarray(value)
            except ValueError as e:  # ragged nested lists
                raise InputShapeError(f"input {name!r} is not a rectangular array: {e}") from None
            if arr.dtype.kind not in "biuf":
                raise InputShapeError(f"input {name!r} must be numeric, got dtype {arr.dtype}")
            if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
                raise InputShapeError(f"input {name!r} contains NaN or Inf (JSON and the model "
                                      "need finite numbers)")
            if tinfo is not None and tinfo.shape is not None:
                want = tinfo.shape
                if arr.ndim != len(want) or any(w != -1 and w != g for w, g in zip(want, arr.shape)):
                    hint = ""
                    if arr.ndim == len(want) - 1:
                        hint = " (add a batch axis, e.g. x[None])"
                    raise InputShapeError(
                        f"input {name!r} of signature {signature!r} must have shape "
                        f"{_fmt_shape(want)}, got {list(arr.shape)}{hint}")
            if arr.ndim == 0:
                raise InputShapeError(f"input {name!r} needs a batch axis, got a scalar")
            if arr.shape[0] == 0:
                raise InputShapeError(f"input {name!r} has an empty batch")
            if batch is not None and arr.shape[0] != batch:
                raise InputShapeError(f"inputs disagree on the batch size: {batch} vs "
                                      f"{arr.shape[0]} ({name!r})")
            batch = arr.shape[0]
            arrays[name] = arr.astype(dtype, copy=False)
        return arrays

    def _finish(self, signature: str, outputs: dict, info: SignatureInfo | None, batch: int) -> dict:
        """Cast outputs to the signature's dtypes and check their shapes."""
        result = {}
        specs = info.outputs if info is not None else {
            k: TensorInfo(v, None) for k, v in _CONTRACT_OUTPUTS.get(signature, {}).items()}
        for name, value in outputs.items():
            tinfo = specs.get(name)
            dtype = tinfo.np_dtype if tinfo is not None else None
            try:
                arr = np.asarray(value, dtype=dtype)
            except (ValueError, TypeError) as e:
                raise InputShapeError(f"output {name!r} of {signature!r} is not a numeric array: {e}") \
                    from None
            if arr.ndim == 0 or arr.shape[0] != batch:
                raise InputShapeError(f"output {name!r} of {signature!r} has shape {list(arr.shape)}, "
                                      f"expected batch {batch}")
            if tinfo is not None and tinfo.shape is not None:
                want = tinfo.shape
                if arr.ndim != len(want) or any(w != -1 and w != g for w, g in zip(want, arr.shape)):
                    raise InputShapeError(f"output {name!r} of {signature!r} has shape "
                                          f"{list(arr.shape)}, signature says {_fmt_shape(want)}")
            result[name] = arr
        if info is not None and set(result) != set(info.outputs):
            raise InputShapeError(f"response of {signature!r} has outputs {sorted(result)}, "
                                  f"signature lists {sorted(info.outputs)}")
        return result

    def _labelled(self, signature: str, inputs: dict, label, batch: int | None) -> dict:
        """``inputs`` plus ``label`` (int32, one per row or, with ``batch`` None, a scalar) when the signature takes
        one; InputShapeError for a missing label (conditional model) or an extra one (unconditional model)."""
        info = self._signature(signature)
        takes = contract.LABEL_INPUT in info.inputs if info is not None else label is not None
        if not takes:
            if label is not None:
                raise InputShapeError(f"model {self._spec()!r} is not class-conditional (signature {signature!r} "
                                      "takes no label): drop label=")
            return inputs
        if label is None:
            raise InputShapeError(f"model {self._spec()!r} is class-conditional (signature {signature!r} takes "
                                  f"{contract.LABEL_INPUT!r}): pass label=K, an integer >= 0 (or one per row)")
        values = np.asarray(label)
        if values.dtype == bool or values.dtype.kind not in "iu":
            raise InputShapeError(f"label must be an integer class (or one per row), got {label!r}")
        if batch is None:
            if values.ndim != 0:
                raise InputShapeError(f"label of {signature!r} is one class for every draw: pass one integer, "
                                      f"got shape {list(values.shape)}")
        else:
            if values.ndim == 0:
                values = np.full(batch, values)
            if values.shape != (batch,):
                raise InputShapeError(f"label must be one integer or {batch} (one per row), got shape "
                                      f"{list(values.shape)}")
        if values.size and (values.min() < 0 or values.max() > np.iinfo(np.int32).max):
            raise InputShapeError(f"label must be a class >= 0 (int32), got {int(values.min()) if values.min() < 0 else int(values.max())}")
        return {**inputs, contract.LABEL_INPUT: values.astype(np.int32)}

    def _rows(self, value) -> int | None:
        """The batch of an input (None when it has no leading axis; the signature check reports that)."""
        shape = np.shape(value) if not isinstance(value, np.ndarray) else value.shape
        return int(shape[0]) if len(shape) else None

    # -- public API
    def predict(self, signature: str, inputs, format: str = "columnar") -> dict:
        """Run ``signature`` on ``inputs`` (dict name -> array, or one array); returns ``{output: ndarray}``.

        ``format`` is ``"columnar"`` (REST ``"inputs"``) or ``"row"`` (REST ``"instances"``); gRPC
        ignores it.
        """
        if format not in ("columnar", "row"):
            raise TFServingError(f"format must be 'columnar' or 'row', got {format!r}")
        info = self._signature(signature)
        arrays = self._prepare(signature, inputs, info)
        batch = next(iter(arrays.values())).shape[0]
        outputs = self._send(signature, arrays, format)
        return self._finish(signature, outputs, info, batch)

    def _predict_labelled(self, signature: str, name: str, value, format: str, label) -> dict:
        inputs = self._labelled(signature, {name: value}, label, self._rows(value))
        return self.predict(signature, inputs, format)

    def decode(self, z, format: str = "columnar", label=None) -> np.ndarray:
        """Latents [batch, latent] -> float32 images [batch, H, W, C] in [0, 1] (``serving_default``); ``label``:
        a class-conditional model's class (one integer or one per row)."""
        return self._predict_labelled("serving_default", contract.LATENT_INPUT, z, format, label)[contract.IMAGE_OUTPUT]

    def decode_uint8(self, z, format: str = "columnar", label=None) -> np.ndarray:
        """Latents [batch, latent] -> uint8 images [batch, H, W, C] (``decode_uint8``)."""
        return self._predict_labelled("decode_uint8", contract.LATENT_INPUT, z, format, label)[contract.IMAGE_OUTPUT]

    def encode(self, images, format: str = "columnar", label=None) -> tuple:
        """Images [batch, H, W, C] in [0, 1] -> ``(mean, log_variance)``, float32 [batch, latent]."""
        out = self._predict_labelled("encode", contract.IMAGE_INPUT, images, format, label)
        return out[contract.MEAN_OUTPUT], out[contract.LOG_VARIANCE_OUTPUT]

    def reconstruct(self, images, format: str = "columnar", label=None) -> np.ndarray:
        """Images [batch, H, W, C] in [0, 1] -> their reconstructions, float32 in [0, 1]."""
        return self._predict_labelled("reconstruct", contract.IMAGE_INPUT, images, format, label)[contract.IMAGE_OUTPUT]

    def sample(self, n: int, seed: int = 0, uint8: bool = False, label=None) -> tuple:
        """``(images, z)``: ``n`` draws of the exported latent sampler with ``seed`` and their decodings.

        Calls ``sample`` (float32 images in [0, 1]) or, with ``uint8``, ``sample_uint8``; ``z`` is float32
        [n, latent]. One seed gives the latents ``OnnxDecoder.sample(n, seed)`` and ``keras-vae sample
        --seed`` give (the portable noise). ``n`` in [1, MAX_BATCH], ``seed`` in [0, 2^32). A class-conditional
        model takes ``label`` (one integer): all n latents from that class's sampler, decoded with that label.
        """
        signature = "sample_uint8" if uint8 else "sample"
        n = _integer("n", n, 1, contract.MAX_BATCH, "split larger draws into several requests")
        seed = _integer("seed", seed, 0, SEED_LIMIT - 1, "the portable noise takes seeds in [0, 2^32)")
        info = self._signature(signature)
        if info is not None:
            got = {name: t.shape for name, t in info.inputs.items()}
            wanted = set(_SAMPLE_INPUTS) | ({contract.LABEL_INPUT} & set(got))
            if set(got) != wanted or any(shape not in ((), None) for shape in got.values()):
                shapes = ", ".join(f"{k} {list(v) if v is not None else '?'}" for k, v in sorted(got.items()))
                raise InputShapeError(f"signature {signature!r} takes inputs {shapes}; sample() needs scalar "
                                      "inputs 'n' and 'seed' (the signatures 'keras-vae export' writes)")
        arrays = {name: np.asarray(value, dtype) for (name, dtype), value in zip(_SAMPLE_INPUTS.items(), (n, seed))}
        arrays = self._labelled(signature, arrays, label, None)
        outputs = self._finish(signature, self._send(signature, arrays, "columnar"), info, n)
        return outputs[contract.IMAGE_OUTPUT], outputs[contract.LATENT_OUTPUT]


def _integer(name: str, value, low: int, high: int, hint: str) -> int:
    """``value`` as an int in [low, high]; InputShapeError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not low <= int(value) <= high:
        raise InputShapeError(f"{name} must be an integer in [{low}, {high}], got {value!r} ({hint})")
    return int(value)


# --------------------------------------------------------------------------------------------- REST
class TFServingClient(_BaseClient):
    """TF Serving REST client: ``TFServingClient("http://host:8501", "vae").decode(z)``.

    ``version=None`` asks for the latest version the server has loaded. ``timeout`` (seconds) bounds
    each HTTP request (connect and read). ``validate=False`` skips the metadata request and the
    client-side checks (the server still checks). A request answered with HTTP 503 (the server is
    loading or overloaded) or refused/reset on connecting is sent again up to ``retries`` times, after
    ``backoff`` x 1, 2, 4, ... seconds (every request here is idempotent); a timeout is not retried.
    """

    RETRY_STATUSES = (503,)

    def __init__(self, base_url: str, model: str, version: int | None = None, timeout: float = 10.0,
                 validate: bool = True, retries: int = 2, backoff: float = 0.25):
        super().__init__(model, version, timeout, validate)
        self._retry_options(retries, backoff)
        parsed = urllib.parse.urlparse(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise TFServingError(f"base_url must look like http://host:8501, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        path = f"/v1/models/{urllib.parse.quote(model, safe='')}"
        if self.version is not None:
            path += f"/versions/{self.version}"
        self.model_url = self.base_url + path

    def _transient(self, error: TFServingError) -> bool:
        """HTTP 503, or a connection refused or reset."""
        return (isinstance(error, TFServingConnectionError) and error.transient) or (
            isinstance(error, TFServingServerError) and error.status in self.RETRY_STATUSES)

    def _request(self, method: str, url: str, body: dict | None = None) -> dict:
        """One request, sent again on a transient failure (``retries``, ``backoff``)."""
        return self._with_retries(lambda: self._request_once(method, url, body))

    def _request_once(self, method: str, url: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body, allow_nan=False).encode()
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data else {})
        what = f"{method} {url}"
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                message = json.loads(raw)["error"]
            except (ValueError, KeyError, TypeError):
                message = raw.decode("utf-8", "replace")[:500] or e.reason
            raise TFServingServerError(f"TF Serving returned HTTP {e.code} for {what}: {message}",
                                       status=e.code, server_message=str(message)) from None
        except urllib.error.URLError as e:
            if isinstance(e.reason, (TimeoutError, socket.timeout)):
                raise TFServingTimeoutError(f"no answer from {what} within {self.timeout:g} s") from None
            raise TFServingConnectionError(f"cannot reach TF Serving at {self.base_url} "
                                           f"({what}): {e.reason}",
                                           transient=isinstance(e.reason, ConnectionError)) from None
        except TimeoutError:
            raise TFServingTimeoutError(f"no answer from {what} within {self.timeout:g} s") from None
        except OSError as e:  # ConnectionResetError, http.client.RemoteDisconnected, ...
            raise TFServingConnectionError(f"connection to TF Serving failed ({what}): {e}",
                                           transient=isinstance(e, ConnectionError)) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise TFServingConnectionError(f"{what} answered with non-JSON: {raw[:200]!r}") from None

    def status(self) -> dict:
        """``GET /v1/models/<name>[/versions/N]``: ``{"model_version_status": [{"version", "state", ...}]}``."""
        return self._request("GET", self.model_url)

    def metadata(self) -> dict:
        """``GET /v1/models/<name>[/versions/N]/metadata``: the raw JSON (model_spec, signature defs)."""
        return self._request("GET", self.model_url + "/metadata")

    def is_ready(self) -> bool:
        """True when the server reports a version of the model ``AVAILABLE`` (errors propagate)."""
        states = [s.get("state") for s in self.status().get("model_version_status", [])]
        return "AVAILABLE" in states

    def _fetch_signatures(self) -> dict:
        meta = self.metadata()
        try:
            defs = meta["metadata"]["signature_def"]["signature_def"]
        except (KeyError, TypeError):
            raise TFServingError(f"metadata of {self._spec()} has no signature_def: "
                                 f"{json.dumps(meta)[:300]}") from None
        return parse_signature_defs(defs)

    def _send(self, signature: str, arrays: dict, format: str) -> dict:
        names = list(arrays)
        if format == "columnar":
            body = {"signature_name": signature,
                    "inputs": {k: v.tolist() for k, v in arrays.items()}}
        else:
            lists = {k: v.tolist() for k, v in arrays.items()}
            batch = len(lists[names[0]])
            if len(names) == 1:
                instances = lists[names[0]]
            else:
                instances = [{k: lists[k][i] for k in names} for i in range(batch)]
            body = {"signature_name": signature, "instances": instances}
        resp = self._request("POST", self.model_url + ":predict", body)
        key = "outputs" if format == "columnar" else "predictions"
        if key not in resp:
            raise TFServingError(f"predict response has no {key!r} key: {json.dumps(resp)[:300]}")
        value = resp[key]
        out_names = self._output_names(signature)
        if format == "columnar":
            if isinstance(value, dict) and (out_names is None or set(value) == set(out_names)):
                return value
            # TF Serving drops the name when a signature has a single output
            return {self._single_output(signature, out_names): value}
        if not isinstance(value, list):
            raise TFServingError(f"'predictions' must be a list, got {type(value).__name__}")
        if value and isinstance(value[0], dict):
            return {k: [row[k] for row in value] for k in value[0]}
        return {self._single_output(signature, out_names): value}

    def _output_names(self, signature: str):
        if self._signatures is not None and signature in self._signatures:
            return list(self._signatures[signature].outputs)
        if signature in _CONTRACT_OUTPUTS:
            return list(_CONTRACT_OUTPUTS[signature])
        return None

    def _single_output(self, signature, out_names) -> str:
        if out_names is None or len(out_names) != 1:
            raise TFServingError(f"response of {signature!r} has an unnamed output but the signature "
                                 f"lists {out_names}")
        return out_names[0]


# --------------------------------------------------------------------------------------------- gRPC
def ndarray_to_tensor_proto(arr: np.ndarray, tensor_pb2, shape_pb2):
    """A NumPy array -> ``tensorflow.TensorProto`` (dtype, shape, little-endian ``tensor_content``)."""
    shape = np.shape(arr)  # np.ascontiguousarray turns a 0-d array (sample's n, seed) into shape (1,)
    arr = np.ascontiguousarray(arr)
    names = {np.dtype(v): k for k, v in _DTYPES.items()}
    if arr.dtype not in names:
        raise InputShapeError(f"dtype {arr.dtype} cannot be sent over gRPC by this client")
    proto = tensor_pb2.TensorProto(dtype=_DTYPE_ENUM[names[arr.dtype]])
    proto.tensor_shape.CopyFrom(shape_pb2.TensorShapeProto(
        dim=[shape_pb2.TensorShapeProto.Dim(size=int(d)) for d in shape]))
    proto.tensor_content = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    return proto


def tensor_proto_to_ndarray(proto) -> np.ndarray:
    """A ``TensorProto`` (``tensor_content`` or the typed ``*_val`` fields) -> NumPy array."""
    name = _ENUM_DTYPE.get(proto.dtype)
    if name is None:
        raise TFServingError(f"response tensor has unsupported dtype enum {proto.dtype}")
    dtype = np.dtype(_DTYPES[name])
    shape = tuple(int(d.size) for d in proto.tensor_shape.dim)
    n = math.prod(shape)
    if proto.tensor_content:
        flat = np.frombuffer(proto.tensor_content, dtype=dtype.newbyteorder("<")).astype(dtype)
    else:
        field = {"DT_FLOAT": "float_val", "DT_DOUBLE": "double_val", "DT_INT64": "int64_val",
                 "DT_BOOL": "bool_val", "DT_HALF": "half_val"}.get(name, "int_val")
        values = getattr(proto, field)
        if name == "DT_HALF":
            flat = np.asarray(values, np.uint16).view(np.float16)
        else:
            flat = np.asarray(values, dtype=dtype)
        if flat.size == 1 and n != 1:  # a splat: one value repeated
            flat = np.full(n, flat[0], dtype=dtype)
    if flat.size != n:
        raise TFServingError(f"response tensor holds {flat.size} values for shape {list(shape)}")
    return flat.reshape(shape)


class TFServingGrpcClient(_BaseClient):
    """TF Serving gRPC client (``PredictionService``): ``TFServingGrpcClient("host:8500", "vae")``.

    Same methods as ``TFServingClient``. ``timeout`` is each RPC's deadline in seconds.
    ``max_message_mb`` raises gRPC's 4 MiB default message limit for large image batches. An RPC that
    fails with ``UNAVAILABLE`` (the server is loading or restarting, or refused the connection) is sent
    again up to ``retries`` times, after ``backoff`` x 1, 2, 4, ... seconds (``GetModelMetadata`` and
    ``Predict`` are idempotent); ``DEADLINE_EXCEEDED`` and every other code are raised at once. The
    channel tries to reconnect after ``backoff / 2`` seconds (within [0.05, 1]; gRPC's default is 1 s), so
    that a server back up by the time of a retry is reached by it.
    """

    RETRY_CODES = ("UNAVAILABLE",)

    def __init__(self, target: str, model: str, version: int | None = None, timeout: float = 10.0,
                 validate: bool = True, max_message_mb: int = 64, retries: int = 2, backoff: float = 0.25):
        super().__init__(model, version, timeout, validate)
        self._retry_options(retries, backoff)
        try:
            import grpc
            from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
            from tensorflow_serving.apis import (
                get_model_metadata_pb2,
                predict_pb2,
                prediction_service_pb2_grpc,
            )
        except ImportError as e:
            raise TFServingError(f"the gRPC client needs tensorflow-serving-api and grpcio "
                                 f"(pip install 'keras-vae[serving]'): {e}") from None
        self._grpc = grpc
        self._predict_pb2 = predict_pb2
        self._metadata_pb2 = get_model_metadata_pb2
        self._tensor_pb2 = tensor_pb2
        self._shape_pb2 = tensor_shape_pb2
        self.target = target
        limit = int(max_message_mb) * 1024 * 1024
        # a channel whose connection failed fails every RPC at once until its reconnect backoff (1 s at first)
        # has passed: reconnect sooner than the first retry
        reconnect_ms = int(min(max(self.backoff / 2, 0.05), 1.0) * 1000)
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit),
            ("grpc.initial_reconnect_backoff_ms", reconnect_ms)])
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)

    def close(self):
        """Close the gRPC channel."""
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _model_spec(self, spec, signature: str | None = None):
        spec.name = self.model
        if self.version is not None:
            spec.version.value = self.version
        if signature is not None:
            spec.signature_name = signature

    def _transient(self, error: TFServingError) -> bool:
        """gRPC's UNAVAILABLE (raised by ``_call_once`` as a transient TFServingConnectionError)."""
        return isinstance(error, TFServingConnectionError) and error.transient

    def _call(self, method, request, what: str):
        """One RPC, sent again on ``UNAVAILABLE`` (``retries``, ``backoff``)."""
        return self._with_retries(lambda: self._call_once(method, request, what))

    def _call_once(self, method, request, what: str):
        grpc = self._grpc
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code = e.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise TFServingTimeoutError(f"no answer from {self.target} ({what}) within "
                                            f"{self.timeout:g} s") from None
            if code.name in self.RETRY_CODES:
                raise TFServingConnectionError(f"cannot reach TF Serving at {self.target} ({what}): "
                                               f"{e.details()}", transient=True) from None
            raise TFServingServerError(f"TF Serving returned {code.name} for {what} on {self.target}: "
                                       f"{e.details()}", status=code.name,
                                       server_message=e.details() or "") from None

    def _fetch_signatures(self) -> dict:
        from google.protobuf import json_format

        req = self._metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        self._model_spec(req.model_spec)
        resp = self._call(self._stub.GetModelMetadata, req, f"GetModelMetadata({self._spec()})")
        sig_map = self._metadata_pb2.SignatureDefMap()
        if "signature_def" not in resp.metadata or not resp.metadata["signature_def"].Unpack(sig_map):
            raise TFServingError(f"metadata of {self._spec()} has no signature_def")
        defs = json_format.MessageToDict(sig_map, preserving_proto_field_name=True)
        return parse_signature_defs(defs.get("signature_def", {}))

    def _send(self, signature: str, arrays: dict, format: str) -> dict:
        req = self._predict_pb2.PredictRequest()
        self._model_spec(req.model_spec, signature)
        for name, arr in arrays.items():
            req.inputs[name].CopyFrom(ndarray_to_tensor_proto(arr, self._tensor_pb2, self._shape_pb2))
        resp = self._call(self._stub.Predict, req, f"Predict({self._spec()}, {signature!r})")
        return {name: tensor_proto_to_ndarray(t) for name, t in resp.outputs.items()}
