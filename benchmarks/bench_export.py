"""Decode latency and throughput of the exported decoders vs the TensorFlow paths (not a test).

    PYTHONPATH=. python benchmarks/bench_export.py [--quick] [--out benchmarks/results]

For an mnist-28-sized and a celeba-64-sized decoder (the paper's VAEGAN presets 'mnist-28' and
'celeba-64' when keras_vae.models.vaegan is importable, else conv VAEs of comparable size), the
model is exported with ``export_run`` (float16 and int8 variants included, parity checked), then
decoding latents is timed through: Keras ``predict``, a direct (eager) Keras call, the Keras call
inside a tf.function, the reloaded SavedModel's ``serving_default``, and onnxruntime (float32,
float16, int8). Latency: p50/p99 over single-latent calls; throughput: images/s at batch 64.
Weights are untrained (speed does not depend on them). Writes export.json and export.md.
Goal: onnxruntime float32 batch-1 p50 <= half of the fastest TensorFlow path's.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(os.path.abspath(__file__)).parents[1]))


def decoder_configs() -> tuple[str, list[tuple[str, object]]]:
    """(which models, [(label, RunConfig)]) for the two sizes."""
    from keras_vae.config import merge
    from keras_vae.config.presets import get_preset

    try:
        import keras_vae.models.vaegan  # noqa: F401

        return "vaegan", [("mnist-28", get_preset("mnist-28")), ("celeba-64", get_preset("celeba-64"))]
    except ModuleNotFoundError:
        pass
    mnist = get_preset("mnist-conv")  # the classic conv VAE on MNIST: 28x28x1, latent 16
    celeba = merge(get_preset("mnist-conv"), {"model": {
        "image_shape": (64, 64, 3), "latent_dim": 128, "conv_filters": (64, 128, 256), "hidden_units": (),
        "likelihood": "bernoulli"}})
    return "conv-vae", [("mnist-28", mnist), ("celeba-64", celeba)]


def time_calls(fn, arg, min_iters: int, min_seconds: float, warmup: int = 5) -> np.ndarray:
    """Per-call wall times in ms (at least min_iters calls and min_seconds of timing)."""
    for _ in range(warmup):
        fn(arg)
    times, start = [], time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn(arg)
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= 20 * min_iters:
            break
    return np.asarray(times)


def measure(fn, z1, z64, quick: bool) -> dict:
    """Batch-1 p50/p99 latency (ms) and batch-64 throughput (images/s, from the median call)."""
    lat = time_calls(fn, z1, min_iters=20 if quick else 200, min_seconds=0.5 if quick else 3.0)
    thr = time_calls(fn, z64, min_iters=5 if quick else 30, min_seconds=0.5 if quick else 3.0, warmup=2)
    return {"batch1_p50_ms": float(np.percentile(lat, 50)), "batch1_p99_ms": float(np.percentile(lat, 99)),
            "batch1_calls": int(lat.size), "batch64_images_per_s": float(64e3 / np.median(thr)),
            "batch64_calls": int(thr.size)}


def ort_worker(path: str, latent_dim: int, threads: int, quick: bool) -> None:
    """Time one ONNX decoder with onnxruntime alone in this process; prints measure()'s JSON."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    z1 = rng.standard_normal((1, latent_dim)).astype(np.float32)
    z64 = rng.standard_normal((64, latent_dim)).astype(np.float32)
    print(json.dumps(measure(lambda z: session.run(None, {"z": z})[0], z1, z64, quick)))


def bench_model(label: str, config, work: Path, quick: bool) -> dict:
    import tensorflow as tf

    from keras_vae.export import export_run
    from keras_vae.models import build_model

    model = build_model(config)
    run = work / f"run-{label}"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    t0 = time.perf_counter()
    report = export_run(run, work / f"export-{label}", float16=True, quantize=True)
    export_seconds = time.perf_counter() - t0
    exp = work / f"export-{label}"
    loaded = tf.saved_model.load(str(exp / report["savedmodel"]["path"]))
    serving = loaded.signatures["serving_default"]

    @tf.function(input_signature=[tf.TensorSpec([None, model.latent_dim], tf.float32)])
    def keras_tf_function(z):
        return model.to_unit(model.decode(z))

    paths = {
        "keras predict": lambda z: model.decoder.predict(z, verbose=0),
        "keras direct call (eager)": lambda z: model.to_unit(model.decode(tf.constant(z))).numpy(),
        "keras call in tf.function": lambda z: keras_tf_function(tf.constant(z)).numpy(),
        "SavedModel serving_default": lambda z: serving(z=tf.constant(z))["image"].numpy(),
    }
    # onnxruntime runs in its own process without TensorFlow, as a deployed consumer does (in one
    # process with TensorFlow its thread pool competes with TF's and batch-1 latency doubles here)
    ort_paths = {"onnxruntime float32": ("decoder.onnx", 0), "onnxruntime float32, 1 thread": ("decoder.onnx", 1),
                 "onnxruntime float16": ("decoder.float16.onnx", 0),
                 "onnxruntime int8 (dynamic)": ("decoder.int8.onnx", 0)}
    rng = np.random.default_rng(0)
    z1 = rng.standard_normal((1, model.latent_dim)).astype(np.float32)
    z64 = rng.standard_normal((64, model.latent_dim)).astype(np.float32)
    results = {}
    for name in list(paths) + list(ort_paths):
        if name in paths:
            results[name] = measure(paths[name], z1, z64, quick)
        else:
            filename, threads = ort_paths[name]
            cmd = [sys.executable, os.path.abspath(__file__), "--ort-worker", str(exp / filename), str(model.latent_dim),
                   str(threads)] + (["--quick"] if quick else [])
            results[name] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            results[name]["intra_op_threads"] = threads or "default"
        print(f"{label:10s} {name:28s} p50 {results[name]['batch1_p50_ms']:8.3f} ms  p99 "
              f"{results[name]['batch1_p99_ms']:8.3f} ms  {results[name]['batch64_images_per_s']:10.0f} img/s", flush=True)
    tf_paths = list(paths)
    fastest_tf = min(tf_paths, key=lambda k: results[k]["batch1_p50_ms"])
    ratio = results["onnxruntime float32"]["batch1_p50_ms"] / results[fastest_tf]["batch1_p50_ms"]
    return {
        "image_shape": list(model.image_shape), "latent_dim": model.latent_dim, "kind": model.model_config.kind,
        "architecture": model.model_config.architecture, "decoder_params": int(model.decoder.count_params()),
        "export_seconds": round(export_seconds, 1),
        "file_bytes": {k: v["bytes"] for k, v in report["files"].items() if k.endswith(".onnx")},
        "variant_errors": {k: {"max_abs_error": v["max_abs_error"], "mean_abs_error": v["mean_abs_error"]}
                           for k, v in report["variants"].items()},
        "parity_max_abs_diff": {k: {a: v.get(f"{a}_max_abs_diff") for a in ("savedmodel", "onnx") if f"{a}_max_abs_diff" in v}
                                for k, v in report["parity"]["signatures"].items()},
        "paths": results,
        "goal": {"fastest_tf_path": fastest_tf, "onnx_over_fastest_tf_batch1_p50": ratio, "met": ratio <= 0.5},
    }


def to_markdown(data: dict) -> str:
    lines = ["# Export benchmark: decode latency and throughput", "",
             f"{data['date']}, {data['machine']}; TensorFlow {data['versions']['tensorflow']}, Keras "
             f"{data['versions']['keras']}, onnxruntime {data['versions']['onnxruntime']}; threads: library defaults.",
             f"Decoders: **{data['models_note']}**. Untrained weights. Command: `{data['command']}`.", "",
             "Goal: onnxruntime float32 batch-1 p50 at most half of the fastest TensorFlow path.", "",
             "onnxruntime runs in its own process without TensorFlow (as a deployed consumer does); the TF paths "
             "share one process. float16/int8 errors are measured on these untrained weights (outputs near 0.5), "
             "so they understate the error of a trained decoder: export.json of a real export has the numbers "
             "that matter.", ""] + ([data["note"], ""] if data.get("note") else [])
    for label, m in data["models"].items():
        g = m["goal"]
        lines += [f"## {label}: {m['kind']} {m['architecture']} decoder, image {'x'.join(map(str, m['image_shape']))}, "
                  f"latent {m['latent_dim']}, {m['decoder_params']:,} parameters", "",
                  "| path | batch-1 p50 (ms) | batch-1 p99 (ms) | batch-64 images/s |", "| --- | ---: | ---: | ---: |"]
        for name, r in m["paths"].items():
            lines.append(f"| {name} | {r['batch1_p50_ms']:.3f} | {r['batch1_p99_ms']:.3f} | {r['batch64_images_per_s']:,.0f} |")
        fb = m["file_bytes"]
        lines += ["", f"Goal: onnxruntime float32 p50 / {g['fastest_tf_path']} p50 = {g['onnx_over_fastest_tf_batch1_p50']:.2f} "
                  f"-> **{'met' if g['met'] else 'NOT met'}**.", "",
                  "| decoder file | bytes | max abs error vs float32 | mean abs error |", "| --- | ---: | ---: | ---: |",
                  f"| decoder.onnx | {fb['decoder.onnx']:,} | (parity vs Keras {m['parity_max_abs_diff']['serving_default']['onnx']:.1e}) | |"]
        for kind, fname in (("float16", "decoder.float16.onnx"), ("quantized", "decoder.int8.onnx")):
            e = m["variant_errors"][kind]
            lines.append(f"| {fname} | {fb[fname]:,} | {e['max_abs_error']:.2e} | {e['mean_abs_error']:.2e} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed calls (a smoke run)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    parser.add_argument("--stem", default="export", help="file names of the results: STEM.json, STEM.md")
    parser.add_argument("--note", default="", help="a provenance line for the report")
    parser.add_argument("--ort-worker", nargs=3, metavar=("ONNX", "LATENT_DIM", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ort_worker:
        ort_worker(args.ort_worker[0], int(args.ort_worker[1]), int(args.ort_worker[2]), args.quick)
        return 0
    import keras
    import onnxruntime
    import tensorflow as tf

    which, configs = decoder_configs()
    note = ("the paper's VAEGAN decoders (presets mnist-28, celeba-64)" if which == "vaegan" else
            "conv VAE decoders (the VAEGAN was not on this branch): mnist-28 = preset mnist-conv; celeba-64 = "
            "64x64x3, latent 128, Dense -> 8x8x256 -> Conv2DTranspose 256/128/64 -> Conv2D 3")
    data = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, no GPU",
            "command": "python benchmarks/bench_export.py" + (" --quick" if args.quick else ""),
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "onnxruntime": onnxruntime.__version__},
            "models_note": note, "note": args.note, "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for label, config in configs:
            data["models"][label] = bench_model(label, config, Path(tmp), args.quick)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.stem}.json").write_text(json.dumps(data, indent=2) + "\n")
    (out / f"{args.stem}.md").write_text(to_markdown(data))
    print(f"wrote {out / args.stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
