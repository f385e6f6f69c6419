"""TFServingClient's retries: a transient 503 or a refused connection is sent again with exponential backoff;
other errors and timeouts are not. The server here is a plain HTTP stub that answers a scripted sequence of
status codes (the transport is under test, not a model)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from keras_vae.serving.client import (TFServingClient, TFServingConnectionError, TFServingError,
                                      TFServingServerError)
from tests.support.tfserving import free_port

STATUS = {"model_version_status": [{"version": "1", "state": "AVAILABLE"}]}


class ScriptedServer:
    """Answers GET /v1/models/m with the next code of ``codes`` (then 200 with STATUS); records each request."""

    def __init__(self, codes):
        self.codes, self.requests = list(codes), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                outer.requests.append(self.path)
                code = outer.codes.pop(0) if outer.codes else 200
                body = json.dumps(STATUS if code == 200 else {"error": f"scripted {code}"}).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sleeps(monkeypatch):
    """The backoff sleeps, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr("keras_vae.serving.client._sleep", waited.append)
    return waited


def test_a_transient_503_is_retried_with_exponential_backoff(sleeps):
    with ScriptedServer([503, 503]) as server:
        client = TFServingClient(server.url, "m", retries=2, backoff=0.5)
        assert client.is_ready()
    assert len(server.requests) == 3 and sleeps == [0.5, 1.0]


def test_503_after_the_last_retry_is_raised_with_the_attempt_count(sleeps):
    with ScriptedServer([503, 503, 503, 503]) as server:
        client = TFServingClient(server.url, "m", retries=2, backoff=0.1)
        with pytest.raises(TFServingServerError, match=r"HTTP 503 .*scripted 503 \(after 3 attempts\)") as info:
            client.status()
    assert info.value.status == 503 and len(server.requests) == 3 and sleeps == pytest.approx([0.1, 0.2])


@pytest.mark.parametrize("code", [400, 404, 500])
def test_other_errors_are_not_retried(sleeps, code):
    with ScriptedServer([code]) as server:
        with pytest.raises(TFServingServerError, match=rf"HTTP {code} .*scripted {code}$"):
            TFServingClient(server.url, "m", retries=3).status()
    assert len(server.requests) == 1 and sleeps == []


def test_retries_zero_sends_once(sleeps):
    with ScriptedServer([503]) as server:
        with pytest.raises(TFServingServerError, match=r"HTTP 503 .*scripted 503$"):
            TFServingClient(server.url, "m", retries=0).status()
    assert len(server.requests) == 1 and sleeps == []


def test_a_refused_connection_is_retried_then_raised(sleeps):
    client = TFServingClient(f"http://127.0.0.1:{free_port()}", "m", retries=2, backoff=0.25, timeout=2)
    with pytest.raises(TFServingConnectionError, match=r"cannot reach TF Serving .*\(after 3 attempts\)") as info:
        client.status()
    assert info.value.transient and sleeps == [0.25, 0.5]


@pytest.mark.parametrize("kwargs, message", [
    ({"retries": -1}, "retries must be a non-negative integer"),
    ({"retries": 1.5}, "retries must be a non-negative integer"),
    ({"backoff": -0.1}, "backoff must be a non-negative number"),
    ({"backoff": float("nan")}, "backoff must be a non-negative number"),
])
def test_retry_options_are_checked(kwargs, message):
    with pytest.raises(TFServingError, match=message):
        TFServingClient("http://127.0.0.1:8501", "m", **kwargs)
