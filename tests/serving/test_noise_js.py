"""serving/node/noise.js (Node and browser) draws the same portable noise as keras_vae.sampling.noise (NumPy)."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from keras_vae.sampling.noise import NOISE_ALGORITHM, float32_ulp, lowbias32, portable_noise
from tests.support.tools import NODE_DIR, require_tool

NOISE_JS = NODE_DIR / "noise.js"
CASES = [(0, 64, 8), (1, 7, 4), (2**32 - 1, 3, 16), (31337, 1, 1), (123456789, 100, 2)]


def _node(script: str) -> str:
    require_tool(shutil.which("node") is not None, "node is not installed (apt-get install nodejs)")
    proc = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_js_noise_matches_numpy():
    script = (f"const m = require({json.dumps(str(NOISE_JS))});"
              f"const cases = {json.dumps(CASES)};"
              "console.log(JSON.stringify({alg: m.NOISE_ALGORITHM, out: cases.map(([s, n, d]) => {"
              "const r = m.portableNoise(s, n, d); return [Array.from(r.eps), Array.from(r.u)]; }),"
              "hash: [0, 1, 0x9E3779B9, 0xFFFFFFFF].map(m.lowbias32)}));")
    got = json.loads(_node(script))
    assert got["alg"] == NOISE_ALGORITHM
    assert got["hash"] == [int(v) for v in lowbias32(np.array([0, 1, 0x9E3779B9, 0xFFFFFFFF], np.uint32))]
    worst = 0.0
    for (seed, n, d), (js_eps, js_u) in zip(CASES, got["out"]):
        eps, u = portable_noise(seed, n, d)
        js_eps = np.asarray(js_eps, np.float32).reshape(n, d)  # float32 -> double -> float32 is exact
        np.testing.assert_array_equal(np.asarray(js_u, np.float32), u)
        assert np.all(np.abs(js_eps - eps) <= float32_ulp(eps)), (seed, np.abs(js_eps - eps).max())
        worst = max(worst, float(np.abs(js_eps - eps).max()))
    print(f"node vs numpy portable noise: max abs diff {worst:.3g}")


@pytest.mark.parametrize("call, match", [("m.portableNoise(-1, 2, 2)", "seed must be an integer in"),
                                         ("m.portableNoise(4294967296, 2, 2)", "seed must be an integer in"),
                                         ("m.portableNoise(0.5, 2, 2)", "seed must be an integer in"),
                                         ("m.portableNoise(0, 2, 0)", "latent size d >= 1")])
def test_js_noise_errors(call, match):
    script = (f"const m = require({json.dumps(str(NOISE_JS))});"
              f"try {{ {call}; console.log('no error'); }} catch (e) {{ console.log(e.message); }}")
    assert match in _node(script)
