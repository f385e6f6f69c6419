"""Benchmark the ONNX decoder consumers: OnnxDecoder (Python), serving/node, the browser page.

    python benchmarks/bench_onnx_decoder.py [--repeats 3] [--calls 40] [--out benchmarks/results]

Measures, for two decoders built like tests/support/decoders.py::build_test_decoder (random init;
the architecture, not the weights, sets the cost):
  - small: latent 8 -> 28x28x1 (Dense, one Conv2DTranspose) -- the test fixture;
  - conv64: latent 32 -> 64x64x3 (Dense -> 8x8x128, Conv2DTranspose 64, 32, 3; stride 2 each);
  Python OnnxDecoder: load time; batch 1 and 64 under 1, 2 and 4 threads sharing one decoder
    (each thread makes --calls decodes at batch 64, 5x as many at batch 1): p50/p99 latency per call and throughput (images/s);
  Node (serving/node/bench.js) and the browser page (serving/web/drive.mjs, headless Chromium,
    onnxruntime-web WASM, 1 thread): first-load time and per-decode time for batch 1 and 64.
Every number is the median over --repeats independent repeats. Writes onnx_decoder.json and .md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from keras_vae.serving.demo import make_server, serve_in_thread, server_url  # noqa: E402
from keras_vae.serving.onnx_decoder import OnnxDecoder  # noqa: E402

MODELS = {
    "small": dict(latent_dim=8, image_shape=(28, 28, 1), widths=(16,)),
    "conv64": dict(latent_dim=32, image_shape=(64, 64, 3), widths=(128, 64, 32)),
}
THREADS = (1, 2, 4)
BATCHES = (1, 64)


def build_decoders(tmp: Path, names) -> dict[str, Path]:
    """Build the decoders in a subprocess, so TensorFlow never loads in the measuring process."""
    code = ("import json, sys; sys.path.insert(0, '.'); from tests.support.decoders import build_test_decoder; "
            "spec = json.loads(sys.argv[1]); "
            "[build_test_decoder(sys.argv[2] + '/' + n, s['latent_dim'], tuple(s['image_shape']), tuple(s['widths'])) "
            "for n, s in spec.items()]")
    spec = {n: MODELS[n] for n in names}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    subprocess.run([sys.executable, "-c", code, json.dumps(spec), str(tmp)], cwd=ROOT, check=True, env=env,
                   stderr=subprocess.DEVNULL)
    return {n: tmp / n / "decoder.onnx" for n in names}


def _pct(values, q):
    return float(np.percentile(np.asarray(values), q))


def bench_python(path, repeats, calls):
    load = []
    for _ in range(repeats):
        t = time.perf_counter()
        dec = OnnxDecoder(path)
        load.append((time.perf_counter() - t) * 1e3)
    rows = []
    for batch in BATCHES:
        z = dec.sample_latents(batch, seed=0)
        dec.decode(z)  # warm-up
        for threads in THREADS:
            runs = []
            for _ in range(repeats):
                n_calls = calls * 5 if batch == 1 else calls

                def worker(_):
                    lat = []
                    for _ in range(n_calls):
                        t = time.perf_counter()
                        dec.decode(z)
                        lat.append((time.perf_counter() - t) * 1e3)
                    return lat
                t0 = time.perf_counter()
                with ThreadPoolExecutor(threads) as pool:
                    lat = [x for part in pool.map(worker, range(threads)) for x in part]
                wall = time.perf_counter() - t0
                runs.append(dict(p50_ms=_pct(lat, 50), p99_ms=_pct(lat, 99),
                                 images_per_s=threads * n_calls * batch / wall))
            rows.append(dict(batch=batch, threads=threads,
                             **{k: statistics.median(r[k] for r in runs) for k in runs[0]}))
    return dict(load_ms=statistics.median(load), decode=rows)


def _median_report(reports, key):
    return statistics.median(statistics.median(r[key]) for r in reports)


def bench_node(path, repeats, calls):
    if not shutil.which("node") or not (ROOT / "serving/node/node_modules/onnxruntime-node").is_dir():
        return {"skipped": "node or serving/node/node_modules missing"}
    reports = []
    for _ in range(repeats):
        out = subprocess.run(["node", str(ROOT / "serving/node/bench.js"), str(path), str(calls)],
                             capture_output=True, text=True, check=True, timeout=300)
        reports.append(json.loads(out.stdout))
    return dict(load_ms=statistics.median(r["load_ms"] for r in reports),
                batch1_ms=_median_report(reports, "batch1_ms"), batch64_ms=_median_report(reports, "batch64_ms"))


def bench_browser(export_dir, repeats, calls):
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.path.exists(chromium) or not (ROOT / "serving/web/node_modules/playwright-core").is_dir():
        return {"skipped": "chromium or serving/web/node_modules missing"}
    server = make_server(export_dir, port=0)
    serve_in_thread(server)
    reports = []
    try:
        for _ in range(repeats):
            out = subprocess.run(["node", str(ROOT / "serving/web/drive.mjs"), "--url", server_url(server) + "?seed=1",
                                  "--bench-repeats", str(calls)], capture_output=True, text=True, check=True, timeout=300)
            rep = json.loads(out.stdout)
            assert rep["state"] == "ready", rep
            reports.append(rep)
    finally:
        server.shutdown()
        server.server_close()
    return dict(load_ms=statistics.median(r["load_ms"] for r in reports),
                page_ready_ms=statistics.median(r["page_ready_ms"] for r in reports),
                batch1_ms=statistics.median(statistics.mean(r["bench"]["batch1_ms"]) for r in reports),
                batch64_ms=statistics.median(statistics.median(r["bench"]["batch64_ms"]) for r in reports),
                note="batch1_ms is a mean per call (performance.now() is coarsened to 0.1 ms); batch64_ms a median")


def to_markdown(result) -> str:
    env = result["environment"]
    lines = [
        "# ONNX decoder benchmark", "",
        f"{env['cpu_count']} CPU cores, {env['platform']}; onnxruntime {env['onnxruntime']} (Python, CPU), "
        f"onnxruntime-node 1.30.0, onnxruntime-web 1.30.0 (WASM, 1 thread) in {env['chromium']}. "
        f"Medians of {result['repeats']} repeats; Python: {result['calls']} calls per thread per repeat at batch 64, "
        f"{5 * result['calls']} at batch 1; throughput = all images / wall time of the repeat. "
        "Random-init decoders built like tests/support/decoders.py (cost depends on the architecture only). "
        f"1-minute load average {env['loadavg_start'][0]:.1f} at start, {env['loadavg_end'][0]:.1f} at end "
        f"(above {env['cpu_count']} means other processes competed for the cores: p99 and multi-thread "
        "numbers are then noisy).", "",
    ]
    for name, m in result["models"].items():
        spec = MODELS[name]
        lines += [f"## {name}: latent {spec['latent_dim']} -> {'x'.join(map(str, spec['image_shape']))} "
                  f"({m['onnx_bytes'] / 1e6:.2f} MB)", "",
                  f"Python OnnxDecoder: load {m['python']['load_ms']:.1f} ms", "",
                  "| batch | threads | p50 ms/call | p99 ms/call | images/s |", "|---:|---:|---:|---:|---:|"]
        for r in m["python"]["decode"]:
            lines.append(f"| {r['batch']} | {r['threads']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['images_per_s']:.0f} |")
        lines += ["", "| runtime | first load ms | batch 1 ms/decode | batch 64 ms/decode |", "|---|---:|---:|---:|"]
        for key, label in (("node", "Node (onnxruntime-node)"), ("browser", "Chromium (onnxruntime-web WASM)")):
            b = m[key]
            if "skipped" in b:
                lines.append(f"| {label} | skipped: {b['skipped']} | | |")
            else:
                lines.append(f"| {label} | {b['load_ms']:.1f} | {b['batch1_ms']:.3f} | {b['batch64_ms']:.2f} |")
        if "browser" in m and "page_ready_ms" in m["browser"]:
            lines.append(f"\nBrowser: page navigation to fully drawn page (grid, strip) {m['browser']['page_ready_ms']:.0f} ms; "
                         "first load = import of onnxruntime-web + session creation (WASM compile, model fetch).")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=40,
                        help="decodes per thread per repeat at batch 64 (x5 at batch 1); repeats in Node/browser")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args(argv)
    import onnxruntime

    chromium = subprocess.run(["/usr/bin/chromium", "--version"], capture_output=True, text=True).stdout.strip() \
        if os.path.exists("/usr/bin/chromium") else "no chromium"
    result = dict(environment=dict(cpu_count=os.cpu_count(), platform=platform.platform(), python=platform.python_version(),
                                   onnxruntime=onnxruntime.__version__, chromium=chromium,
                                   loadavg_start=list(os.getloadavg())),
                  repeats=args.repeats, calls=args.calls, models={})
    with tempfile.TemporaryDirectory() as tmp:
        paths = build_decoders(Path(tmp), args.models)
        for name, path in paths.items():
            d = path.parent
            print(f"[{name}] python ...", flush=True)
            m = dict(onnx_bytes=path.stat().st_size, python=bench_python(path, args.repeats, args.calls))
            print(f"[{name}] node ...", flush=True)
            m["node"] = bench_node(path, args.repeats, args.calls)
            print(f"[{name}] browser ...", flush=True)
            m["browser"] = bench_browser(d, args.repeats, args.calls)
            result["models"][name] = m
    result["environment"]["loadavg_end"] = list(os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "onnx_decoder.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "onnx_decoder.md").write_text(to_markdown(result))
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
