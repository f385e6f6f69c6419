"""The HTTP server under the contract server and ``serve-demo``: bounded threads, queue, time and bytes.

``http.server.ThreadingHTTPServer`` as it comes listens with a backlog of 5 (200 simultaneous clients
got ``ConnectionResetError``), starts one thread per connection without limit, waits forever on a
client that sends half a request, and closes a connection with unread bytes in it (the kernel then
answers with a reset, which can destroy the reply the client has not read yet). :class:`BoundedHTTPServer`:

- listens with a backlog of ``Limits.backlog`` (1024) and hands accepted connections to at most
  ``Limits.max_threads`` handler threads through a queue of ``Limits.max_queued`` connections; a
  connection beyond that queue is answered ``503`` with ``Retry-After`` at once (never reset);
- gives every request deadlines: its request line and headers within ``header_timeout_s`` (this also
  bounds an idle kept-alive connection), its body within ``body_timeout_s``, its reply within
  ``write_timeout_s``; a connection past a deadline is closed, so no client holds a thread longer;
- closes every connection gracefully: the reply is flushed, our side is shut down, then a single
  background thread reads and drops what the client still sends for up to ``linger_s`` before closing;
- logs a client that disconnects before its reply as one line (``disconnect_level``), never a traceback.

:class:`ByteBudget` bounds the request bytes the handlers hold at once (the contract server answers
503 + Retry-After beyond it). Handlers derive from :class:`BoundedHandler`.
"""
from __future__ import annotations

import io
import logging
import math
import queue
import selectors
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer

log = logging.getLogger(__name__)

__all__ = ["DISCONNECTS", "BoundedHTTPServer", "BoundedHandler", "ByteBudget", "Limits"]

# what a client that went away (or stalled past a deadline) looks like from the handler
DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)
MAX_LINGERING = 4096  # connections being closed gracefully at once; beyond, closed at once


@dataclass(frozen=True)
class Limits:
    """Bounds of one server. Times in seconds; every value must be > 0."""

    max_threads: int = 32  # handler threads (each serves one connection at a time)
    max_queued: int = 1024  # accepted connections waiting for a thread; 503 + Retry-After beyond
    backlog: int = 1024  # listen backlog (the kernel caps it at net.core.somaxconn)
    header_timeout_s: float = 10.0  # wait for a request line and its headers (idle keep-alive included)
    body_timeout_s: float = 60.0  # read one request body
    write_timeout_s: float = 60.0  # write one reply
    linger_s: float = 2.0  # after the reply: read and drop what the client still sends, then close
    retry_after_s: int = 1  # Retry-After of a 503

    def __post_init__(self):
        for name, value in vars(self).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value <= 0:
                raise ValueError(f"Limits.{name} must be a finite number > 0, got {value!r}")
        for name in ("max_threads", "max_queued", "backlog", "retry_after_s"):
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"Limits.{name} must be an integer, got {getattr(self, name)!r}")


class ByteBudget:
    """Bytes that may be reserved at once (request bodies in flight); ``try_reserve`` never waits."""

    def __init__(self, capacity: int):
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ValueError(f"capacity must be an integer >= 1, got {capacity!r}")
        self.capacity = capacity
        self.reserved = 0
        self.peak = 0
        self._lock = threading.Lock()

    def try_reserve(self, n: int) -> bool:
        """Reserve ``n`` bytes if they fit next to what is reserved; False (nothing reserved) otherwise."""
        with self._lock:
            if self.reserved + n > self.capacity:
                return False
            self.reserved += n
            self.peak = max(self.peak, self.reserved)
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self.reserved -= n


class _DeadlineReader(io.RawIOBase):
    """The socket's input, refusing to wait past ``handler.read_deadline`` (TimeoutError)."""

    def __init__(self, handler: BoundedHandler):
        self._handler = handler

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self._handler.read_deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the client was too slow to send its request")
        sock = self._handler.connection
        sock.settimeout(remaining)
        return sock.recv_into(buffer)


class _DeadlineWriter(io.BufferedIOBase):
    """The socket's output (unbuffered), refusing to wait past the reply's write deadline (TimeoutError)."""

    def __init__(self, handler: BoundedHandler):
        self._handler = handler

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        handler = self._handler
        if handler.write_deadline is None:
            handler.write_deadline = time.monotonic() + handler.server.limits.write_timeout_s
        remaining = handler.write_deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the client was too slow to read the reply")
        handler.connection.settimeout(remaining)
        handler.connection.sendall(data)  # the timeout bounds the whole call
        return len(data)


class BoundedHandler(BaseHTTPRequestHandler):
    """A request handler with the deadlines of ``server.limits`` (see the module).

    ``read_deadline`` is the time (``time.monotonic``) by which the current read must finish: set for the
    request line and headers here; a handler reading a body calls :meth:`start_body`.
    """

    server: BoundedHTTPServer
    read_deadline: float
    write_deadline: float | None

    def setup(self) -> None:
        self.connection = self.request
        self.read_deadline = time.monotonic() + self.server.limits.header_timeout_s
        self.write_deadline = None
        self.rfile = io.BufferedReader(_DeadlineReader(self), 65536)
        self.wfile = _DeadlineWriter(self)

    def handle_one_request(self) -> None:
        self.read_deadline = time.monotonic() + self.server.limits.header_timeout_s
        self.write_deadline = None
        super().handle_one_request()

    def handle(self) -> None:
        try:
            super().handle()
        except DISCONNECTS as exc:
            self.close_connection = True
            self.server.log_disconnect(self, exc)

    def start_body(self) -> None:
        """Start the body's deadline (``body_timeout_s`` from now)."""
        self.read_deadline = time.monotonic() + self.server.limits.body_timeout_s


class _Lingerer:
    """One thread that closes connections gracefully: reads and drops their input until EOF or a deadline."""

    def __init__(self, linger_s: float):
        self.linger_s = linger_s
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)  # a full wake-up pipe already wakes the thread
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._deadlines: dict[socket.socket, float] = {}
        self._thread: threading.Thread | None = None
        self._closed = False

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            if self._closed or len(self._deadlines) >= MAX_LINGERING:
                sock.close()
                return
            try:
                sock.setblocking(False)
                self._selector.register(sock, selectors.EVENT_READ, None)
            except (OSError, ValueError):
                sock.close()
                return
            self._deadlines[sock] = time.monotonic() + self.linger_s
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="http-linger", daemon=True)
                self._thread.start()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def _drop(self, sock: socket.socket) -> None:
        self._deadlines.pop(sock, None)
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            pass
        sock.close()

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    return
                soonest = min(self._deadlines.values(), default=None)
            timeout = None if soonest is None else max(0.0, soonest - time.monotonic())
            try:
                events = self._selector.select(timeout)
            except (OSError, ValueError):
                return
            with self._lock:
                if self._closed:
                    return
                for key, _ in events:
                    sock = key.fileobj
                    if sock is self._wake_r:
                        try:
                            while self._wake_r.recv(4096):
                                pass
                        except OSError:
                            pass
                        continue
                    try:
                        for _ in range(16):  # at most 1 MiB per wake-up: a fast sender cannot starve the rest
                            if not sock.recv(65536):  # EOF: the client has closed too
                                self._drop(sock)
                                break
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._drop(sock)
                now = time.monotonic()
                for sock in [s for s, deadline in self._deadlines.items() if deadline <= now]:
                    self._drop(sock)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for sock in list(self._deadlines):
                self._drop(sock)
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()


class BoundedHTTPServer(HTTPServer):
    """An HTTP server with a fixed pool of handler threads and bounded queue, time and closes (see the module).

    ``label`` names the server in log lines; ``disconnect_level`` is the logging level of the one line
    logged when a client goes away before its reply. ``threads`` is how many handler threads exist now.
    """

    daemon_threads = True

    def __init__(self, address, handler_class, limits: Limits | None = None, label: str = "http",
                 disconnect_level: int = logging.DEBUG, bind_and_activate: bool = True):
        self.limits = limits or Limits()
        self.request_queue_size = self.limits.backlog  # read by server_activate (listen)
        self.label, self.disconnect_level = label, disconnect_level
        self._pending: queue.Queue = queue.Queue()  # bounded by _busy (below) in process_request
        self._workers: list[threading.Thread] = []
        self._busy = 0  # connections queued or being handled
        self._pool_lock = threading.Lock()
        self._lingerer = _Lingerer(self.limits.linger_s)
        super().__init__(address, handler_class, bind_and_activate)

    @property
    def threads(self) -> int:
        return len(self._workers)

    # -- accept side (the serve_forever thread)
    def process_request(self, request, client_address) -> None:
        with self._pool_lock:
            queued = self._busy < self.limits.max_threads + self.limits.max_queued
            if queued:
                self._pending.put((request, client_address))
                self._busy += 1
                if self._busy > len(self._workers) and len(self._workers) < self.limits.max_threads:
                    worker = threading.Thread(target=self._work, daemon=True,
                                              name=f"{self.label}-{len(self._workers)}")
                    self._workers.append(worker)
                    worker.start()
        if not queued:
            self.reject(request, client_address)

    def reject(self, request, client_address) -> None:
        """Answer 503 + Retry-After without reading the request, then close gracefully."""
        body = self.busy_body()
        head = (f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: {self.limits.retry_after_s}\r\n"
                f"Content-Type: {self.busy_content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n").encode()
        try:
            request.setblocking(False)
            request.send(head + body)  # a fresh socket's send buffer takes it whole
        except OSError:
            pass
        self.shutdown_request(request)

    busy_content_type = "application/json"

    def busy_body(self) -> bytes:
        return (b'{"error": "server busy: every handler thread is taken and the queue is full; '
                b'retry after the Retry-After seconds"}')

    # -- handler threads
    def _work(self) -> None:
        while True:
            item = self._pending.get()
            if item is None:
                return
            request, client_address = item
            try:
                self.finish_request(request, client_address)
            except Exception:  # noqa: BLE001 - as socketserver: report, keep serving
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                with self._pool_lock:
                    self._busy -= 1

    def shutdown_request(self, request) -> None:
        """Flush our side (FIN after the reply), then let the lingerer drain the input and close."""
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:
            request.close()
            return
        self._lingerer.add(request)

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, DISCONNECTS):
            log.log(self.disconnect_level, "%s: client %s went away (%s)", self.label,
                    _address(client_address), type(exc).__name__)
            return
        super().handle_error(request, client_address)  # a bug: the traceback helps

    def log_disconnect(self, handler: BoundedHandler, exc: BaseException) -> None:
        what = getattr(handler, "requestline", "") or "its request"
        log.log(self.disconnect_level, "%s: client %s went away before the reply to %s (%s)", self.label,
                _address(handler.client_address), what[:200], type(exc).__name__)

    def server_close(self) -> None:
        super().server_close()  # stop accepting first
        with self._pool_lock:
            workers = list(self._workers)
        while True:  # connections that never got a thread
            try:
                item = self._pending.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[0].close()
        for _ in workers:
            self._pending.put(None)
        self._lingerer.close()


def _address(client_address) -> str:
    try:
        return f"{client_address[0]}:{client_address[1]}"
    except (TypeError, IndexError):
        return str(client_address)
