"""Paths of the checkout, skipping when an outside tool is missing, and plain-onnxruntime references."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = REPO_ROOT / "serving" / "node"
WEB_DIR = REPO_ROOT / "serving" / "web"


def require_tool(condition: bool, reason: str) -> None:
    """Skip with a reason printed to the terminal (not only in the -ra summary)."""
    if not condition:
        print(f"\nSKIP: {reason}", file=sys.stderr)
        pytest.skip(reason)


def ort_reference(decoder_path, z):
    """Reference decode with a plain onnxruntime session (no OnnxDecoder code involved)."""
    import numpy as np
    import onnxruntime as ort

    from keras_vae.export import contract

    sess = ort.InferenceSession(str(decoder_path), providers=["CPUExecutionProvider"])
    return sess.run([contract.IMAGE_OUTPUT], {contract.LATENT_INPUT: np.asarray(z, np.float32)})[0]


def drive_explorer(export_dir, query: str, *args: str, timeout: float = 120) -> dict:
    """Serve ``export_dir`` (keras_vae.serving.demo), open ``?query`` in headless Chromium with serving/web/drive.mjs
    and ``args``; skips without the browser tools, asserts the page got ready without console errors and
    returns drive.mjs's report."""
    import subprocess

    from keras_vae.serving.demo import make_server, serve_in_thread, server_url

    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    require_tool(os.path.exists(chromium), f"{chromium} not found: apt-get install -y chromium")
    require_tool((WEB_DIR / "node_modules" / "playwright-core").is_dir(), "playwright-core missing: npm ci in serving/web")
    require_tool((WEB_DIR / "node_modules" / "onnxruntime-web" / "dist").is_dir(), "onnxruntime-web missing: npm ci")
    server = make_server(export_dir, port=0)
    serve_in_thread(server)
    try:
        proc = subprocess.run(["node", str(WEB_DIR / "drive.mjs"), "--url", f"{server_url(server)}?{query}", *args],
                              capture_output=True, text=True, timeout=timeout)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["state"] == "ready" and report["console"] == [], report
    return report
