"""ONNX decoder vs TensorFlow: batch-1 latency and batch-N throughput of the residual decoders.

    PYTHONPATH=. python -m benchmarks --suite decoder [--size quick|full] [--repeats 3]

For each preset (quick: tiny, celeba-64; full: celeba-64, paper-celeba-hq-256) the decoder is built
with random weights *and random BatchNorm statistics* (so BatchNorm is a real affine map, as after
training; cost depends on the architecture only), exported to ONNX by ``keras_vae.export.onnx_export``
(tf2onnx, "before") and rewritten by ``keras_vae.export.onnx_optimize`` ("after"), checked against Keras at
batch 1, 7 and 64, then timed in rounds: each round measures the TF path (the tf.function the
SavedModel serves, in this process), then starts one onnxruntime process without TensorFlow (as a
deployed consumer runs) that measures every ONNX variant one after the other. Reported numbers are
medians over rounds; within a round batch-1 latency is the p50 of single-latent calls and
throughput is images / median call time at batch N.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, environment, median, percentile, time_calls

PRESETS = {"quick": ("tiny", "celeba-64"), "full": ("celeba-64", "paper-celeba-hq-256")}
TF_PATH = "TensorFlow tf.function (the SavedModel's serving_default)"
TF_XLA = "TensorFlow tf.function, jit_compile=True (XLA)"
TF_PATHS = (TF_PATH, TF_XLA)  # the goal compares against the faster of the two (batch-1 p50)
# name -> (graph, threads): "default" = onnxruntime's own defaults (what the shipped decoder got before)
ORT_PATHS = {
    "onnxruntime, tf2onnx graph, default session": ("before", "default"),
    "onnxruntime, tf2onnx graph, 1 thread": ("before", 1),
    "onnxruntime, optimized graph, OnnxDecoder (automatic threads)": ("after", "auto"),
    "onnxruntime, optimized graph, 1 thread": ("after", 1),
}
# batch-N per preset: 64, except at 256x256 where TensorFlow needs about 20 GB for batch 64 (the
# first full run was OOM-killed on a 23 GB machine); there parity is checked at 1, 7 and 8.
BATCH_LIMIT = {"paper-celeba-hq-256": 8}
BEFORE, AFTER = "onnxruntime, tf2onnx graph, default session", "onnxruntime, optimized graph, OnnxDecoder (automatic threads)"
THROUGHPUT_PATHS = (TF_PATH, TF_XLA, BEFORE, AFTER)  # batch N is costly at 256x256: only the headline paths


def call_counts(image_macs: float, batch: int) -> tuple[int, int]:
    """(batch-1 calls, batch-N calls) per round: about 2e10 multiply-adds of batch-1 work, >= 1 big call."""
    return int(np.clip(2e10 / image_macs, 5, 50)), 1 if image_macs * batch > 2e11 else 2


def measure(run, z1, zn, calls1: int, callsn: int) -> dict:
    """Batch-1 p50/p90 wall ms and median CPU ms per call; batch-N images per wall second and per CPU second."""
    lat, lat_cpu = time_calls(lambda: run(z1), calls1, warmup=2)
    row = {"batch1_p50_ms": percentile(lat, 50), "batch1_p90_ms": percentile(lat, 90), "batch1_cpu_ms": median(lat_cpu)}
    if callsn:
        big, big_cpu = time_calls(lambda: run(zn), callsn, warmup=1)
        row["batchN_images_per_s"] = len(zn) * 1e3 / median(big)
        row["batchN_images_per_cpu_s"] = len(zn) * 1e3 / max(median(big_cpu), 1e-9)
    return row


def ort_worker(spec_path: str) -> None:
    """One round of every ONNX variant (in this process, no TensorFlow); prints JSON."""
    import onnxruntime as ort

    from keras_vae.serving.onnx_decoder import OnnxDecoder
    from keras_vae.serving.onnx_threads import session_options

    spec = json.loads(Path(spec_path).read_text())
    rng = np.random.default_rng(0)
    z1 = rng.standard_normal((1, spec["latent_dim"])).astype(np.float32)
    zn = rng.standard_normal((spec["batch"], spec["latent_dim"])).astype(np.float32)
    out = {}
    for name, (graph, threads) in ORT_PATHS.items():
        path = spec["paths"][graph]
        if threads == "auto":
            decoder = OnnxDecoder(path, verify=False)
            run = decoder.decode
            threads_used = {"batch 1": decoder.threads_for(1), f"batch {spec['batch']}": decoder.threads_for(spec["batch"])}
        else:
            options = ort.SessionOptions() if threads == "default" else session_options(threads)
            options.log_severity_level = 3
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            run = (lambda s: lambda z: s.run(None, {"z": z})[0])(session)
            threads_used = threads
        out[name] = measure(run, z1, zn, spec["calls1"], spec["callsn"] if name in THROUGHPUT_PATHS else 0)
        out[name]["threads"] = threads_used
    print(json.dumps(out))


def _random_batchnorm(model, seed: int) -> None:
    import keras

    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.2, shape),
                               rng.normal(0, 0.2, shape), rng.uniform(0.5, 2.0, shape)])


def bench_preset(preset: str, work: Path, repeats: int, batch: int, log=print) -> dict:
    batch = min(batch, BATCH_LIMIT.get(preset, batch))
    import onnxruntime as ort
    import tensorflow as tf

    from keras_vae.export import contract, onnx_export
    from keras_vae.export.onnx_optimize import optimize_file
    from keras_vae.export.signatures import make_functions
    from keras_vae.models import build_model
    from keras_vae.config.presets import get_preset
    from keras_vae.serving.onnx_threads import macs_per_image

    model = build_model(get_preset(preset))
    _random_batchnorm(model, seed=1)
    fn, spec = make_functions(model)["serving_default"]
    before, after = work / f"{preset}.before.onnx", work / f"{preset}.after.onnx"
    onnx_export.convert_function(fn, spec, onnx_export.model_metadata(model, "decoder", preset, "random-init"), before)
    after.write_bytes(before.read_bytes())
    graph = optimize_file(after)
    image_macs = macs_per_image(before)

    parity = {}
    for label, path in (("before", before), ("after", after)):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        diffs = {}
        for b in sorted({min(b, batch) for b in contract.PARITY_BATCH_SIZES}):
            z = np.random.default_rng(b).standard_normal((b, model.latent_dim)).astype(np.float32)
            want = model.to_unit(model.decode(tf.constant(z), training=False)).numpy()
            diffs[str(b)] = float(np.max(np.abs(session.run(None, {"z": z})[0] - want)))
        parity[label] = diffs
    log(f"[{preset}] {image_macs / 1e6:.1f} MMAC/image; parity vs Keras {parity}")

    calls1, callsn = call_counts(image_macs, batch)
    spec_path = work / f"{preset}.spec.json"
    spec_path.write_text(json.dumps({"paths": {"before": str(before), "after": str(after)}, "latent_dim": model.latent_dim,
                                     "batch": batch, "calls1": calls1, "callsn": callsn}))
    rng = np.random.default_rng(0)
    z1 = tf.constant(rng.standard_normal((1, model.latent_dim)).astype(np.float32))
    zn = tf.constant(rng.standard_normal((batch, model.latent_dim)).astype(np.float32))
    xla = tf.function(lambda z: {contract.IMAGE_OUTPUT: model.to_unit(model.decode(z, training=False))},
                      input_signature=[spec], jit_compile=True)
    tf_fns = {TF_PATH: fn, TF_XLA: xla}
    rounds: dict[str, list[dict]] = {}
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=str(ROOT))
    for r in range(repeats):
        for name, tf_fn in tf_fns.items():
            row = measure(lambda z, f=tf_fn: f(z)[contract.IMAGE_OUTPUT].numpy(), z1, zn, calls1, callsn)
            rounds.setdefault(name, []).append({**row, "threads": "TF default"})
        proc = subprocess.run([sys.executable, "-m", "benchmarks.decoder_speed", "--ort-worker", str(spec_path)],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        for name, row in json.loads(proc.stdout.strip().splitlines()[-1]).items():
            rounds.setdefault(name, []).append(row)
        log(f"[{preset}] round {r + 1}/{repeats} (batch-1 wall/CPU ms): " + "; ".join(
            f"{n} {v[-1]['batch1_p50_ms']:.2f}/{v[-1]['batch1_cpu_ms']:.2f}" for n, v in rounds.items()))
    paths = {}
    for name, rows in rounds.items():
        paths[name] = {key: median([row[key] for row in rows]) for key in rows[0] if key != "threads"}
        paths[name]["threads"] = rows[0]["threads"]
        paths[name]["rounds"] = rows
    fastest = min(TF_PATHS, key=lambda name: paths[name]["batch1_p50_ms"])
    tf_b1, tf_cpu = paths[fastest]["batch1_p50_ms"], paths[fastest]["batch1_cpu_ms"]
    tf_best = {"batch1_p50_ms": fastest, "batchN_images_per_s": max(TF_PATHS, key=lambda n: paths[n]["batchN_images_per_s"])}
    return {"fastest_tf": tf_best,"preset": preset, "image_shape": list(model.image_shape), "latent_dim": model.latent_dim,
            "decoder_params": int(model.decoder.count_params()), "macs_per_image": image_macs,
            "batch": batch, "calls_per_round": {"batch1": calls1, f"batch{batch}": callsn},
            "graph": graph, "parity_max_abs_diff": parity, "paths": paths,
            "goal": {"batch1_ratio_after_vs_tf": paths[AFTER]["batch1_p50_ms"] / tf_b1,
                     "batch1_ratio_before_vs_tf": paths[BEFORE]["batch1_p50_ms"] / tf_b1,
                     "throughput_ratio_after_vs_tf": (paths[AFTER]["batchN_images_per_s"]
                                                      / paths[tf_best["batchN_images_per_s"]]["batchN_images_per_s"]),
                     "batch1_cpu_ratio_after_vs_tf": paths[AFTER]["batch1_cpu_ms"] / tf_cpu,
                     "throughput_per_cpu_ratio_after_vs_tf": (
                         paths[AFTER]["batchN_images_per_cpu_s"]
                         / paths[tf_best["batchN_images_per_s"]]["batchN_images_per_cpu_s"])}}


def run(size: str = "quick", repeats: int = 3, batch: int = 64, presets=None, log=print) -> dict:
    """Benchmark every preset of ``size``; returns the result dict (environment, per-preset numbers)."""
    import onnxruntime
    import tensorflow as tf

    result = {"suite": "decoder", "size": size, "repeats": repeats, "environment": environment(),
              "versions": {"tensorflow": tf.__version__, "onnxruntime": onnxruntime.__version__}, "presets": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in presets or PRESETS[size]:
            result["presets"][preset] = bench_preset(preset, Path(tmp), repeats, batch, log)
    result["environment"]["loadavg_end"] = list(os.getloadavg())
    return result


def to_markdown(result: dict) -> str:
    env = result["environment"]
    lines = ["# ONNX decoder vs TensorFlow (`python -m benchmarks --suite decoder`)", "",
             f"{env['cpu']}, {env['cpu_count']} cores ({', '.join(env['cpu_flags'])}); TensorFlow "
             f"{result['versions']['tensorflow']}, onnxruntime {result['versions']['onnxruntime']}. Random weights and "
             f"BatchNorm statistics. Medians over {result['repeats']} interleaved rounds (TF, then every ONNX variant "
             f"in a fresh process without TensorFlow). 1-minute load average {env['loadavg'][0]:.1f} at start, "
             f"{env['loadavg_end'][0]:.1f} at end: above {env['cpu_count']} other processes competed for the cores, "
             "so absolute numbers are inflated and wall times favour the process with more threads (the "
             "scheduler shares cores per runnable thread); compare rows of one table, and prefer the CPU "
             "columns (process CPU time per call, every thread counted) when the load is high.", ""]
    for preset, p in result["presets"].items():
        b = p["batch"]
        lines += [f"## {preset}: latent {p['latent_dim']} -> {'x'.join(map(str, p['image_shape']))}, "
                  f"{p['decoder_params']:,} parameters, {p['macs_per_image'] / 1e9:.2f} GMAC per image", "",
                  f"| path | threads | batch-1 p50 ms | batch-1 p90 ms | batch-1 CPU ms | batch-{b} images/s | "
                  f"batch-{b} images per CPU-s |", "|---|---|---:|---:|---:|---:|---:|"]
        for name, row in p["paths"].items():
            thr, thr_cpu = row.get("batchN_images_per_s"), row.get("batchN_images_per_cpu_s")
            threads = row["threads"] if not isinstance(row["threads"], dict) else \
                ", ".join(f"{k}: {v}" for k, v in row["threads"].items())
            lines.append(f"| {name} | {threads} | {row['batch1_p50_ms']:.2f} | {row['batch1_p90_ms']:.2f} | "
                         f"{row['batch1_cpu_ms']:.2f} | {'' if thr is None else f'{thr:.1f}'} | "
                         f"{'' if thr_cpu is None else f'{thr_cpu:.1f}'} |")
        g = p["goal"]
        fastest = p.get("fastest_tf", {})
        lines += ["", f"Fastest TF path: batch 1 {fastest.get('batch1_p50_ms', TF_PATH)}, batch {b} "
                  f"{fastest.get('batchN_images_per_s', TF_PATH)}; the ratios below are against it.",
                  "", f"Goal batch-1 p50 <= 0.5x TF: optimized {g['batch1_ratio_after_vs_tf']:.2f}x "
                  f"(tf2onnx graph, default session: {g['batch1_ratio_before_vs_tf']:.2f}x) -> "
                  f"**{'met' if g['batch1_ratio_after_vs_tf'] <= 0.5 else 'not met'}**; goal batch-{b} throughput "
                  f">= TF: {g['throughput_ratio_after_vs_tf']:.2f}x -> "
                  f"**{'met' if g['throughput_ratio_after_vs_tf'] >= 1 else 'not met'}**. In CPU time (less "
                  f"distorted by other processes): batch-1 {g['batch1_cpu_ratio_after_vs_tf']:.2f}x TF's CPU ms per call, "
                  f"batch-{b} {g['throughput_per_cpu_ratio_after_vs_tf']:.2f}x TF's images per CPU-second.", "",
                  f"Graph rewrites: {p['graph']['rewrites']}; ops before {p['graph']['ops_before']}, "
                  f"after {p['graph']['ops_after']}. Max abs difference from Keras by batch size: "
                  f"before {p['parity_max_abs_diff']['before']}, after {p['parity_max_abs_diff']['after']}.", ""]
    return "\n".join(lines)


def summary_rows(result: dict) -> list[list[str]]:
    """Rows of the one summary table: (benchmark, configuration, metric, value, baseline, ratio)."""
    rows = []
    for preset, p in result.get("presets", {}).items():
        fastest = p.get("fastest_tf", {})  # results written before the XLA path compared with TF_PATH only
        tf_row, before, after = p["paths"][fastest.get("batch1_p50_ms", TF_PATH)], p["paths"][BEFORE], p["paths"][AFTER]
        tf_big = p["paths"][fastest.get("batchN_images_per_s", TF_PATH)]
        rows.append([f"decoder {preset}", "batch-1 CPU ms per call: ONNX optimized vs TF tf.function",
                     f"{after['batch1_cpu_ms']:.2f}", f"{tf_row['batch1_cpu_ms']:.2f}",
                     f"{p['goal']['batch1_cpu_ratio_after_vs_tf']:.2f}x (was "
                     f"{before['batch1_cpu_ms'] / tf_row['batch1_cpu_ms']:.2f}x)"])
        rows.append([f"decoder {preset}", "batch-1 p50 ms: ONNX optimized vs TF tf.function",
                     f"{after['batch1_p50_ms']:.2f}", f"{tf_row['batch1_p50_ms']:.2f}",
                     f"{p['goal']['batch1_ratio_after_vs_tf']:.2f}x (was {p['goal']['batch1_ratio_before_vs_tf']:.2f}x)"])
        rows.append([f"decoder {preset}", f"batch-{p['batch']} images/s: ONNX optimized vs TF",
                     f"{after['batchN_images_per_s']:.1f}", f"{tf_big['batchN_images_per_s']:.1f}",
                     f"{p['goal']['throughput_ratio_after_vs_tf']:.2f}x (was "
                     f"{before['batchN_images_per_s'] / tf_big['batchN_images_per_s']:.2f}x)"])
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--ort-worker":
        sys.path.insert(0, str(ROOT))
        ort_worker(sys.argv[2])
    else:
        sys.exit("usage: python -m benchmarks --suite decoder (this module is its worker)")
