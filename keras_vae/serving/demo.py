"""A tiny static HTTP server for the latent explorer page (``serving/web``) and one decoder.onnx.

Serves exactly: the page (``/``, ``/index.html``, ``/explorer.js``, ``/noise.js`` -- the portable noise,
whose one source is ``serving/node/noise.js``, and ``/attributes.js``, the attribute edit of
``serving/node/attributes.js``), the export's ``/decoder.onnx``, ``/sampler.onnx`` and
``/sampler.json`` (when present; the page then samples the prior), ``/attributes.json`` (when present;
the page then shows the attribute-vector controls) and ``/export.json``, and onnxruntime-web's
dist files under ``/node_modules/onnxruntime-web/dist/``
with correct MIME types (``.mjs`` text/javascript, ``.wasm`` application/wasm). Those files come from the js
home that ``keras-vae js install`` fills (``keras_vae.serving.assets.js_home``), else from a checkout's
``serving/web/node_modules``. Standard library only; used by ``keras-vae serve-demo`` and by the browser tests.

Under load (``keras_vae.serving.httpd``): at most ``Limits.max_threads`` handler threads and a queue of
``Limits.max_queued`` connections (503 + Retry-After beyond, never a reset), deadlines for the request and
the reply (a stalled client is dropped, it never holds a thread for good), files sent in 1 MiB pieces (memory
does not grow with the number of clients), and a client that goes away before its reply is one log line.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
from http import HTTPStatus
from pathlib import Path
from urllib.parse import unquote, urlsplit

from keras_vae.export import contract
from keras_vae.errors import ArtifactError
from keras_vae.serving.assets import ORT_WEB_DIST, asset_dir, find_ort_web_dist
from keras_vae.serving.httpd import BoundedHandler, BoundedHTTPServer, Limits
from keras_vae.utils.validation import PORT_MAX, check_host, listen_error

log = logging.getLogger(__name__)

WEB_DIR = asset_dir("web")
NOISE_JS = asset_dir("node") / "noise.js"  # shared with the Node package
ATTRIBUTES_JS = asset_dir("node") / "attributes.js"  # shared with the Node package
ORT_DIST = ORT_WEB_DIST  # also the URL path under which the page loads onnxruntime-web
ORT_ENTRY = "ort.wasm.bundle.min.mjs"
PAGE_FILES = ("index.html", "explorer.js", "screenshot.png")
FILE_PIECE = 1 << 20  # bytes of a file sent at a time
MIME = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".wasm": "application/wasm", ".json": "application/json",
    ".onnx": "application/octet-stream", ".png": "image/png", ".map": "application/json",
}


def check_web_assets(web_root=WEB_DIR, ort_dist=None) -> Path:
    """The onnxruntime-web dist folder to serve: ``ort_dist`` when given, else the js home's, else a checkout's
    (``keras_vae.serving.assets.find_ort_web_dist``); ArtifactError telling to run `keras-vae js install`."""
    web_root = Path(web_root)
    if not (web_root / "index.html").is_file():
        raise ArtifactError(f"latent explorer page not found: {web_root / 'index.html'}")
    if ort_dist is None:
        return find_ort_web_dist(ORT_ENTRY)
    dist = Path(ort_dist)
    if not (dist / ORT_ENTRY).is_file():
        raise ArtifactError(f"onnxruntime-web is not installed ({dist / ORT_ENTRY} is missing): "
                            "run `keras-vae js install` (needs Node.js and npm)")
    return dist


def _routes(export_dir: Path, web_root: Path) -> dict[str, Path]:
    routes = {"/": web_root / "index.html"}
    routes.update({f"/{name}": web_root / name for name in PAGE_FILES})
    routes["/noise.js"] = NOISE_JS
    routes["/attributes.js"] = ATTRIBUTES_JS
    for name in (contract.DECODER_ONNX, contract.SAMPLER_ONNX, contract.SAMPLER_JSON, contract.ATTRIBUTES_JSON):
        routes["/" + name] = export_dir / name
    routes["/" + contract.EXPORT_JSON] = export_dir / contract.EXPORT_JSON
    return routes


def make_server(export_dir, host: str = "127.0.0.1", port: int = 8000, web_root=WEB_DIR,
                ort_dist=None, limits: Limits | None = None) -> BoundedHTTPServer:
    """An HTTP server (not yet started) for the page and ``export_dir/decoder.onnx``; port 0 picks one.
    ``ort_dist``: the onnxruntime-web dist folder to serve (default: found by :func:`check_web_assets`);
    ``limits``: threads, queue and deadlines (``keras_vae.serving.httpd.Limits``, defaults otherwise)."""
    export_dir, web_root = Path(export_dir), Path(web_root)
    if export_dir.is_file():
        export_dir = export_dir.parent
    if not (export_dir / contract.DECODER_ONNX).is_file():
        raise ArtifactError(f"{export_dir} has no {contract.DECODER_ONNX} (pass an export folder)")
    dist = check_web_assets(web_root, ort_dist).resolve()
    routes = _routes(export_dir, web_root)
    dist_prefix = "/" + ORT_DIST.as_posix() + "/"

    class Handler(BoundedHandler):
        server_version = "keras-vae-demo"

        def _resolve(self) -> Path | None:
            url_path = unquote(urlsplit(self.path).path)
            if url_path in routes:
                return routes[url_path]
            if url_path.startswith(dist_prefix):
                name = url_path[len(dist_prefix):]
                if name and "/" not in name and name not in (".", ".."):
                    return dist / name
            return None

        def _send(self, head_only: bool) -> None:
            path = self._resolve()
            if path is None or not path.is_file():
                self.send_error(HTTPStatus.NOT_FOUND, "not part of the latent explorer")
                return
            try:
                file = path.open("rb")
            except OSError:
                self.send_error(HTTPStatus.NOT_FOUND, "not part of the latent explorer")
                return
            with file:  # streamed: memory does not grow with the file or the number of clients
                self.send_response(HTTPStatus.OK)
                self.send_header("Content-Type", MIME.get(path.suffix, "application/octet-stream"))
                self.send_header("Content-Length", str(os.fstat(file.fileno()).st_size))
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                if not head_only:
                    shutil.copyfileobj(file, self.wfile, FILE_PIECE)

        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self._send(head_only=False)

        def do_HEAD(self) -> None:  # noqa: N802
            self._send(head_only=True)

        def log_message(self, fmt, *args) -> None:
            log.info("%s %s", self.address_string(), fmt % args)

    check_host(host)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= PORT_MAX:
        raise ArtifactError(f"port must be an integer in [0, {PORT_MAX}] (0 picks a free port), got {port!r}")
    try:
        server = BoundedHTTPServer((host, port), Handler, limits=limits, label="serve-demo",
                                   disconnect_level=logging.WARNING)
    except OSError as exc:  # in use, no permission, not an address of this machine
        raise listen_error(host, port, exc) from None
    return server


def serve_in_thread(server: BoundedHTTPServer) -> threading.Thread:
    """Run ``server.serve_forever`` in a daemon thread (stop with server.shutdown(); server.server_close())."""
    thread = threading.Thread(target=server.serve_forever, name="keras-vae-demo", daemon=True)
    thread.start()
    return thread


def server_url(server: BoundedHTTPServer) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}/"
