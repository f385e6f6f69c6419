"""The shipped ONNX decoder in every runtime at batch 1: TensorFlow, Python onnxruntime, Node, the browser.

    PYTHONPATH=. python -m benchmarks --suite js [--repeats 3]

For the mnist-28 and celeba-64 VAEGAN decoders (random weights *and random BatchNorm statistics*, so
BatchNorm is a real affine map; cost depends on the architecture only) the decoder is exported as the
exporter ships it (tf2onnx, then ``keras_vae.export.onnx_optimize``), checked against Keras at batch 1, and
timed in interleaved rounds; each round measures, one after the other:

- TensorFlow: the tf.function the SavedModel serves, in this process (TF's default threads);
- Python onnxruntime: ``OnnxDecoder`` (automatic threads), and a plain 1-thread session (the
  browser's thread count), in this process;
- Node: ``serving/node/bench.js`` (onnxruntime-node, the session serving/node/decoder.js makes), a fresh process;
- Chromium: ``serving/web/drive.mjs`` on the latent explorer page (headless Debian chromium,
  onnxruntime-web WASM, 1 thread, ``?n=1``), a fresh browser.

Each runtime reports per-decode wall ms (p50 of the round's calls); TF, Python and Node also process
CPU ms per call (the browser has no CPU clock). Numbers are medians over rounds. Rows whose runtime is
missing (no ``node``, no ``serving/*/node_modules``, no chromium) are reported as skipped.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, environment, median, percentile, time_calls

PRESETS = ("mnist-28", "celeba-64")
TF_PATH = "TensorFlow tf.function (SavedModel serving_default)"
PY_AUTO = "Python onnxruntime, OnnxDecoder (automatic threads)"
PY_ONE = "Python onnxruntime, 1 thread"
NODE = "Node onnxruntime-node 1.30 (serving/node session: spinning off)"
BROWSER = "Chromium onnxruntime-web 1.30 WASM, 1 thread"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def calls_per_round(image_macs: float) -> int:
    """Batch-1 calls per round: about 5e9 multiply-adds of work, between 5 and 100 calls."""
    return int(np.clip(5e9 / max(image_macs, 1.0), 5, 100))


def node_available() -> str | None:
    """None when Node and serving/node's modules are there, else why not."""
    if not shutil.which("node"):
        return "node is not installed"
    if not (ROOT / "serving/node/node_modules/onnxruntime-node").is_dir():
        return "serving/node/node_modules missing (run serving/install_test_deps.sh)"
    return None


def browser_available() -> str | None:
    """None when chromium, Node and serving/web's modules are there, else why not."""
    if not shutil.which("node"):
        return "node is not installed"
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} missing"
    if not (ROOT / "serving/web/node_modules/playwright-core").is_dir():
        return "serving/web/node_modules missing (run serving/install_test_deps.sh)"
    return None


def export_decoder(preset: str, folder: Path):
    """The preset's decoder (random weights and BatchNorm statistics) as the exporter ships it:
    ``folder/decoder.onnx`` (tf2onnx + keras_vae.export.onnx_optimize) and an export.json with its SHA-256.
    Returns (Keras model, the tf.function of serving_default, max abs difference from Keras at batch 1)."""
    import onnxruntime as ort

    from benchmarks.decoder_speed import _random_batchnorm
    from keras_vae.export import contract, onnx_export
    from keras_vae.export.onnx_optimize import optimize_file
    from keras_vae.export.signatures import make_functions
    from keras_vae.models import build_model
    from keras_vae.config.presets import get_preset

    folder.mkdir(parents=True, exist_ok=True)
    model = build_model(get_preset(preset))
    _random_batchnorm(model, seed=1)
    fn, spec = make_functions(model)["serving_default"]
    path = folder / contract.DECODER_ONNX
    onnx_export.convert_function(fn, spec, onnx_export.model_metadata(model, "decoder", preset, "random-init"), path)
    optimize_file(path)
    data = path.read_bytes()
    (folder / contract.EXPORT_JSON).write_text(json.dumps(
        {"files": {contract.DECODER_ONNX: {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}}}))
    z = np.random.default_rng(1).standard_normal((1, model.latent_dim)).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diff = float(np.max(np.abs(session.run(None, {"z": z})[0] - fn(z)[contract.IMAGE_OUTPUT].numpy())))
    return model, fn, diff


def _node_round(path: Path, calls: int) -> dict:
    out = subprocess.run(["node", str(ROOT / "serving/node/bench.js"), str(path), str(calls), "1"],
                         capture_output=True, text=True, check=True, timeout=600)
    report = json.loads(out.stdout)
    return {"batch1_p50_ms": percentile(report["batch1_ms"], 50), "batch1_cpu_ms": median(report["batch1_cpu_ms"]),
            "load_ms": report["load_ms"]}


def _browser_round(url: str, calls: int) -> dict:
    out = subprocess.run(["node", str(ROOT / "serving/web/drive.mjs"), "--url", url, "--bench-repeats", str(calls),
                          "--bench-batches", "1", "--timeout-ms", "300000"],
                         capture_output=True, text=True, check=True, timeout=900)
    report = json.loads(out.stdout)
    if report.get("state") != "ready":
        raise RuntimeError(f"the explorer page did not get ready: {report.get('status')} {report.get('console')}")
    return {"batch1_p50_ms": percentile(report["bench"]["batch1_ms"], 50), "load_ms": report["load_ms"]}


def bench_preset(preset: str, work: Path, repeats: int, log=print) -> dict:
    import onnxruntime as ort
    import tensorflow as tf

    from keras_vae.export import contract
    from keras_vae.serving.demo import make_server, serve_in_thread, server_url
    from keras_vae.serving.onnx_decoder import OnnxDecoder
    from keras_vae.serving.onnx_threads import macs_per_image, session_options

    folder = work / preset
    model, fn, diff = export_decoder(preset, folder)
    path = folder / contract.DECODER_ONNX
    image_macs = macs_per_image(path)
    calls = calls_per_round(image_macs)
    log(f"[{preset}] {image_macs / 1e6:.1f} MMAC/image, {calls} calls per round; parity vs Keras at batch 1: {diff:.2e}")
    z = np.random.default_rng(0).standard_normal((1, model.latent_dim)).astype(np.float32)
    zt = tf.constant(z)
    decoder = OnnxDecoder(path, verify=False)
    one = ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])
    local = {TF_PATH: lambda: fn(zt)[contract.IMAGE_OUTPUT].numpy(), PY_AUTO: lambda: decoder.decode(z),
             PY_ONE: lambda: one.run(None, {"z": z})[0]}
    skipped = {NODE: node_available(), BROWSER: browser_available()}
    server = None
    if skipped[BROWSER] is None:
        server = make_server(folder, port=0)
        serve_in_thread(server)
    rounds: dict[str, list[dict]] = {}
    try:
        for r in range(repeats):
            for name, run in local.items():
                wall, cpu = time_calls(run, calls, warmup=2)
                rounds.setdefault(name, []).append({"batch1_p50_ms": percentile(wall, 50), "batch1_cpu_ms": median(cpu)})
            if skipped[NODE] is None:
                rounds.setdefault(NODE, []).append(_node_round(path, calls))
            if server is not None:
                rounds.setdefault(BROWSER, []).append(_browser_round(server_url(server) + "?n=1&seed=1", calls))
            log(f"[{preset}] round {r + 1}/{repeats} (batch-1 p50 ms): " + "; ".join(
                f"{n} {v[-1]['batch1_p50_ms']:.2f}" for n, v in rounds.items()))
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
    paths = {}
    for name, rows in rounds.items():
        paths[name] = {key: median([row[key] for row in rows]) for key in rows[0]}
        paths[name]["rounds"] = rows
    for name, why in skipped.items():
        if why is not None:
            paths[name] = {"skipped": why}
    return {"preset": preset, "image_shape": list(model.image_shape), "latent_dim": model.latent_dim,
            "macs_per_image": image_macs, "calls_per_round": calls, "parity_batch1_max_abs_diff": diff,
            "threads": {PY_AUTO: decoder.threads_for(1), PY_ONE: 1, BROWSER: 1}, "paths": paths}


def run(size: str = "quick", repeats: int = 3, log=print) -> dict:
    """Every preset of PRESETS (the same at both sizes: batch 1 only); returns the result dict."""
    import onnxruntime
    import tensorflow as tf

    result = {"suite": "js", "size": size, "repeats": repeats, "environment": environment(),
              "versions": {"tensorflow": tf.__version__, "onnxruntime": onnxruntime.__version__,
                           "chromium": _chromium_version()}, "presets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in PRESETS:
            result["presets"][preset] = bench_preset(preset, Path(tmp), repeats, log)
    result["environment"]["loadavg_end"] = list(os.getloadavg())
    return result


def _chromium_version() -> str:
    if not os.path.exists(CHROMIUM):
        return "no chromium"
    try:
        return subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"chromium --version failed: {exc}"


def to_markdown(result: dict) -> str:
    env = result["environment"]
    lines = ["# The ONNX decoder in every runtime, batch 1 (`python -m benchmarks --suite js`)", "",
             f"{env['cpu']}, {env['cpu_count']} cores; TensorFlow {result['versions']['tensorflow']}, onnxruntime "
             f"{result['versions']['onnxruntime']} (Python), onnxruntime-node 1.30.0, onnxruntime-web 1.30.0 in "
             f"{result['versions']['chromium']}. The decoder as the exporter ships it (tf2onnx + keras_vae.export.onnx_optimize), "
             f"random weights and BatchNorm statistics. Medians over {result['repeats']} interleaved rounds (TF, Python, "
             f"Node, Chromium). 1-minute load average {env['loadavg'][0]:.1f} at start, "
             f"{env.get('loadavg_end', env['loadavg'])[0]:.1f} at end: above {env['cpu_count']}, other processes "
             "competed for the cores and wall times are inflated (most for the runtimes with more threads); "
             "the CPU column (process CPU time per call, every thread) is the less distorted one. The browser "
             "has no CPU clock, and performance.now() is coarsened to 0.1 ms.", ""]
    for preset, p in result["presets"].items():
        lines += [f"## {preset}: latent {p['latent_dim']} -> {'x'.join(map(str, p['image_shape']))}, "
                  f"{p['macs_per_image'] / 1e6:.1f} M multiply-adds per image", "",
                  "| runtime | threads | batch-1 p50 ms | batch-1 CPU ms | vs TF p50 | session load ms |",
                  "|---|---|---:|---:|---:|---:|"]
        tf_p50 = p["paths"][TF_PATH]["batch1_p50_ms"]
        for name, row in p["paths"].items():
            if "skipped" in row:
                lines.append(f"| {name} | | skipped: {row['skipped']} | | | |")
                continue
            cpu = row.get("batch1_cpu_ms")
            load = row.get("load_ms")
            lines.append(f"| {name} | {p['threads'].get(name, 'default')} | {row['batch1_p50_ms']:.3f} | "
                         f"{'' if cpu is None else f'{cpu:.3f}'} | {row['batch1_p50_ms'] / tf_p50:.2f}x | "
                         f"{'' if load is None else f'{load:.0f}'} |")
        lines += ["", f"{p['calls_per_round']} calls per round; ONNX vs Keras at batch 1: max abs difference "
                  f"{p['parity_batch1_max_abs_diff']:.1e}.", ""]
    return "\n".join(lines)


def summary_rows(result: dict) -> list[list[str]]:
    """Rows of the one summary table: Node and the browser against TF at batch 1, per preset."""
    rows = []
    for preset, p in result.get("presets", {}).items():
        tf_row = p["paths"][TF_PATH]
        for name, label in ((NODE, "Node onnxruntime-node"), (BROWSER, "Chromium WASM 1 thread")):
            row = p["paths"].get(name, {"skipped": "not measured"})
            if "skipped" in row:
                rows.append([f"decoder {preset}", f"batch-1 p50 ms: {label} vs TF tf.function",
                             f"skipped ({row['skipped']})", f"{tf_row['batch1_p50_ms']:.2f}", ""])
            else:
                rows.append([f"decoder {preset}", f"batch-1 p50 ms: {label} vs TF tf.function",
                             f"{row['batch1_p50_ms']:.2f}", f"{tf_row['batch1_p50_ms']:.2f}",
                             f"{row['batch1_p50_ms'] / tf_row['batch1_p50_ms']:.2f}x"])
                if "batch1_cpu_ms" in row:  # wall time on a busy machine is mostly the scheduler's share
                    rows.append([f"decoder {preset}", f"batch-1 CPU ms per call: {label} vs TF tf.function",
                                 f"{row['batch1_cpu_ms']:.2f}", f"{tf_row['batch1_cpu_ms']:.2f}",
                                 f"{row['batch1_cpu_ms'] / tf_row['batch1_cpu_ms']:.2f}x"])
    return rows
