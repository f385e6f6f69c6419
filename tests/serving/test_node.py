"""serving/node (onnxruntime-node) decodes like Python onnxruntime; its CLI writes PNGs and float files."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from tests.support.decoders import TEST_IMAGE_SHAPE, TEST_LATENT_DIM
from tests.support.tools import NODE_DIR, require_tool
from keras_vae.serving.onnx_decoder import OnnxDecoder

D = TEST_LATENT_DIM
CLI = NODE_DIR / "decode.js"


@pytest.fixture(scope="module", autouse=True)
def node_available():
    require_tool(shutil.which("node") is not None, "node is not installed (apt-get install nodejs)")
    require_tool((NODE_DIR / "node_modules" / "onnxruntime-node").is_dir(),
                 f"{NODE_DIR}/node_modules is missing: run serving/install_test_deps.sh "
                 f"(ONNXRUNTIME_NODE_INSTALL=skip npm ci in serving/node)")


def _latents(n=5, seed=11):
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)


def _cli(*args, check=True):
    proc = subprocess.run(["node", str(CLI), *map(str, args)], capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def _read_bin(path):
    meta = json.loads((path.parent / (path.name + ".json")).read_text())
    return np.fromfile(path, dtype="<f4").reshape(meta["shape"])


def test_node_cli_json_latents_match_python(decoder_path, tmp_path):
    z = _latents()
    (tmp_path / "z.json").write_text(json.dumps(z.tolist()))  # float32 -> double -> float32 is exact
    out = tmp_path / "out"
    proc = _cli("--model", decoder_path, "--latents", tmp_path / "z.json", "--out-dir", out,
                "--float-out", tmp_path / "images.bin")
    summary = json.loads(proc.stdout)
    assert summary["shape"] == [5, *TEST_IMAGE_SHAPE] and len(summary["pngs"]) == 5
    node_images = _read_bin(tmp_path / "images.bin")
    dec = OnnxDecoder(decoder_path)
    py_images = dec.decode(z)
    diff = float(np.abs(node_images - py_images).max())
    print(f"node vs python onnxruntime max abs diff: {diff:.3g}")
    assert diff <= 1e-5
    # PNGs: same float -> uint8 rule as keras_vae/utils/images.py (allow 1 level at exact .5 boundaries)
    py_u8 = dec.decode(z, output="uint8")
    for i, png in enumerate(sorted(out.glob("image_*.png"))):
        img = Image.open(png)
        assert img.mode == "L" and img.size == (28, 28)
        assert np.abs(np.asarray(img).astype(int) - py_u8[i, :, :, 0]).max() <= 1


def test_node_cli_binary_latents_with_and_without_sidecar(decoder_path, tmp_path):
    z = _latents(3, seed=12)
    z.astype("<f4").tofile(tmp_path / "z.bin")
    _cli("--model", decoder_path, "--latents", tmp_path / "z.bin", "--out-dir", tmp_path / "a",
         "--float-out", tmp_path / "a.json")
    got = json.loads((tmp_path / "a.json").read_text())
    a = np.asarray(got["data"], np.float32).reshape(got["shape"])
    np.testing.assert_allclose(a, OnnxDecoder(decoder_path).decode(z), atol=1e-5, rtol=0)
    # a sidecar that contradicts the model's latent size is refused
    (tmp_path / "z.bin.json").write_text(json.dumps({"shape": [6, 4]}))
    proc = _cli("--model", decoder_path, "--latents", tmp_path / "z.bin", "--out-dir", tmp_path / "b", check=False)
    assert proc.returncode == 2 and "latents have shape [6,4]" in proc.stderr and "expected [N, 8]" in proc.stderr


@pytest.mark.parametrize("content, match", [
    ([[0.0] * (D - 1)], "latent 0 has length 7, the decoder expects 8"),
    ([[0.0] * (D - 1) + [None]], "NaN, Inf or a non-number at flat index 7"),
    ("{not json", "is not valid JSON"),
])
def test_node_cli_rejects_bad_latents(decoder_path, tmp_path, content, match):
    f = tmp_path / "z.json"
    f.write_text(content if isinstance(content, str) else json.dumps(content))
    proc = _cli("--model", decoder_path, "--latents", f, "--out-dir", tmp_path / "o", check=False)
    assert proc.returncode == 2, proc.stdout
    assert match in proc.stderr
    assert not (tmp_path / "o").exists()


def test_node_cli_missing_model_and_usage(tmp_path):
    (tmp_path / "z.json").write_text("[[0]]")
    proc = _cli("--model", tmp_path / "nope.onnx", "--latents", tmp_path / "z.json", "--out-dir", tmp_path, check=False)
    assert proc.returncode == 2 and "decoder file not found" in proc.stderr
    proc = _cli("--model", tmp_path / "nope.onnx", check=False)
    assert proc.returncode == 2 and "missing --latents" in proc.stderr


def test_node_library_function(decoder_path):
    z = _latents(2, seed=13)
    script = (f"require({str(NODE_DIR / 'decoder.js')!r}).decode({str(decoder_path)!r}, {json.dumps(z.tolist())})"
              ".then(r => console.log(JSON.stringify({dims: r.dims, data: Array.from(r.data)})))")
    proc = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    arr = np.asarray(got["data"], np.float32).reshape(got["dims"])
    assert np.abs(arr - OnnxDecoder(decoder_path).decode(z)).max() <= 1e-5
