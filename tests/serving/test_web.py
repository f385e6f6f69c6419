"""The latent explorer (serving/web) in headless Chromium decodes like Python; the demo server and CLI."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
from PIL import Image

from tests.support.decoders import TEST_IMAGE_SHAPE, TEST_LATENT_DIM
from tests.support.tools import REPO_ROOT, WEB_DIR, require_tool
from keras_vae.export import contract
from keras_vae.errors import ArtifactError
from keras_vae.sampling.noise import float32_ulp, portable_noise
from keras_vae.serving import assets
from keras_vae.serving.demo import ORT_ENTRY, make_server, serve_in_thread, server_url
from keras_vae.serving.onnx_decoder import OnnxDecoder

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def _need_web_modules():
    """The onnxruntime-web dist folder serve-demo will serve (js home, else the checkout's node_modules)."""
    try:
        return assets.find_ort_web_dist(ORT_ENTRY)
    except ArtifactError as exc:
        require_tool(False, f"{exc} (or serving/install_test_deps.sh: npm ci in serving/web)")


@pytest.fixture
def server(decoder_dir):
    _need_web_modules()
    srv = make_server(decoder_dir, port=0)
    serve_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type"), resp.read()


def test_server_routes_and_mime_types(server, decoder_path):
    base = server_url(server)
    status, ctype, body = _get(base)
    assert status == 200 and ctype.startswith("text/html") and b"latent explorer" in body
    assert _get(base + "decoder.onnx")[2] == decoder_path.read_bytes()
    assert _get(base + "explorer.js")[1].startswith("text/javascript")
    assert _get(base + "noise.js")[2] == (REPO_ROOT / "serving" / "node" / "noise.js").read_bytes()  # one source
    with pytest.raises(urllib.error.HTTPError, match="404"):
        _get(base + "sampler.onnx")  # this export has none: the page samples the prior
    assert _get(base + "node_modules/onnxruntime-web/dist/ort.wasm.bundle.min.mjs")[1].startswith("text/javascript")
    wasm = sorted(p.name for p in _need_web_modules().glob("*.wasm"))[0]
    status, ctype, body = _get(base + "node_modules/onnxruntime-web/dist/" + wasm)
    assert ctype == "application/wasm" and body[:4] == b"\0asm"
    for path in ("node_modules/playwright-core/package.json", "node_modules/onnxruntime-web/dist/../package.json",
                 "package.json", "..%2f..%2fpyproject.toml"):
        with pytest.raises(urllib.error.HTTPError, match="404"):
            _get(base + path)


def test_missing_onnxruntime_web_says_js_install(decoder_dir, tmp_path, monkeypatch):
    (tmp_path / "index.html").write_text("<html></html>")
    with pytest.raises(ArtifactError, match=r"onnxruntime-web is not installed .* run `keras-vae js install`"):
        make_server(decoder_dir, port=0, web_root=tmp_path, ort_dist=tmp_path / "dist")
    monkeypatch.setenv(assets.JS_DIR_ENV, str(tmp_path / "js-home"))
    monkeypatch.setattr(assets, "_checkout_web", lambda: None)  # as in an installed wheel
    with pytest.raises(ArtifactError, match=r"onnxruntime-web is not installed \(no ort.wasm.bundle.min.mjs in "
                                            r".*js-home/web/node_modules/onnxruntime-web/dist\): run `keras-vae js install`"):
        make_server(decoder_dir, port=0, web_root=tmp_path)
    with pytest.raises(ArtifactError, match="has no decoder.onnx"):
        make_server(tmp_path, port=0)


def test_js_home_comes_first_and_is_not_escaped(decoder_dir, tmp_path, monkeypatch):
    """serve-demo serves onnxruntime-web from the js home (keras-vae js install) before a checkout's
    serving/web/node_modules, under the same URLs, and nothing else of the js home."""
    home = tmp_path / "js-home"
    dist = home / "web" / "node_modules" / "onnxruntime-web" / "dist"
    dist.mkdir(parents=True)
    (dist / ORT_ENTRY).write_text("// from the js home")
    (dist / "ort-wasm-simd-threaded.wasm").write_bytes(b"\0asm-from-home")
    (home / "web" / "node_modules" / "onnxruntime-web" / "package.json").write_text("{}")
    (home / "keras-vae-js.json").write_text("{}")
    monkeypatch.setenv(assets.JS_DIR_ENV, str(home))
    assert assets.ort_web_candidates()[0] == dist
    srv = make_server(decoder_dir, port=0)
    serve_in_thread(srv)
    try:
        base = server_url(srv) + "node_modules/onnxruntime-web/dist/"
        assert _get(base + ORT_ENTRY)[2] == b"// from the js home"
        status, ctype, body = _get(base + "ort-wasm-simd-threaded.wasm")
        assert ctype == "application/wasm" and body == b"\0asm-from-home"
        for path in ("../package.json", "..%2fpackage.json", "..%2f..%2f..%2f..%2fkeras-vae-js.json",
                     "%2e%2e/package.json", "", "missing.mjs"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                _get(base + path)
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.slow
def test_serve_demo_command(decoder_dir):
    _need_web_modules()
    proc = subprocess.Popen([sys.executable, "-m", "keras_vae", "serve-demo", str(decoder_dir), "--port", "0",
                             "--no-browser"], cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "latent 8, image 28x28x1" in line, line + proc.stderr.read() if proc.poll() is not None else line
        url = line.split(" at ")[1].split()[0]
        assert _get(url + "decoder.onnx")[2] == (decoder_dir / contract.DECODER_ONNX).read_bytes()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_serve_demo_refuses_a_changed_file(export_copy):
    path = export_copy / contract.DECODER_ONNX
    path.write_bytes(path.read_bytes() + b"\0")
    proc = subprocess.run([sys.executable, "-m", "keras_vae", "serve-demo", str(export_copy), "--no-browser"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "does not match export.json" in proc.stderr


@pytest.mark.slow
def test_browser_decodes_like_python(server, decoder_path, tmp_path):
    require_tool(os.path.exists(CHROMIUM), f"{CHROMIUM} not found: apt-get install -y chromium")
    require_tool((WEB_DIR / "node_modules" / "playwright-core").is_dir(), "playwright-core missing: npm ci in serving/web")
    z = np.random.default_rng(21).standard_normal((3, TEST_LATENT_DIM)).astype(np.float32)
    url = server_url(server) + "?seed=5&z=" + urllib.parse.quote(json.dumps(z.tolist()))
    shot = tmp_path / "explorer.png"
    proc = subprocess.run(["node", str(WEB_DIR / "drive.mjs"), "--url", url, "--screenshot", str(shot), "--interact"],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["state"] == "ready", report
    assert report["console"] == [], report["console"]
    assert "onnxruntime-web 1.30.0" in report["status"]
    result = report["result"]
    assert result["dims"] == [3, *TEST_IMAGE_SHAPE]
    browser = np.asarray(result["data"], np.float32).reshape(result["dims"])
    diff = float(np.abs(browser - OnnxDecoder(decoder_path).decode(z)).max())
    print(f"browser (onnxruntime-web wasm) vs python onnxruntime max abs diff: {diff:.3g}")
    assert diff <= 1e-4
    after = report["interact"].pop("last_sample")
    assert report["interact"] == {"slider_changed_current": True, "new_sample_changed_grid": True}
    # no sampler.onnx in this export: the grid shows the prior, z = the portable noise of its seed
    assert report["sampler"] == "prior"
    for sample, seed in ((report["last_sample"], 5), (after, 6)):  # "New sample" advances the seed
        eps = portable_noise(seed, 16, TEST_LATENT_DIM)[0]
        assert sample["seed"] == seed
        assert np.all(np.abs(np.asarray(sample["z"], np.float32) - eps) <= float32_ulp(eps))
    img = np.asarray(Image.open(shot).convert("L"))
    assert img.shape[1] == 900 and img.shape[0] >= 600
    assert np.asarray(Image.open(shot).convert("L"))[150:300, 16:800].std() > 20  # the grid is drawn, not blank
    if os.environ.get("KERAS_VAE_UPDATE_SCREENSHOT"):
        shutil.copy(shot, WEB_DIR / "screenshot.png")
