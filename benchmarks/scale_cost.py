"""How training cost grows with image size: img/s and peak memory per image of the paper's model, float32.

    PYTHONPATH=. python -m benchmarks --suite scale [--size quick|full] [--repeats 3]

The paper's architecture (``paper-celeba-hq-256``: residual encoder/decoder, 128 filters at every
stage, latent 512, PatchGAN) at 28, 64, 128 (quick) and 256 (full) pixels, with as many stages as
halve the image to 4x4 (7x7 at 28: two stages), trained with ``VAEGAN.train_step`` on a fixed batch,
two batch sizes per size. Each (size, batch) point runs in its own process, so that the peak resident
set size (``ru_maxrss``) is that point's alone: memory per image is the slope between the two
batches, (peak(b2) - peak(b1)) / (b2 - b1); the intercept is everything that does not grow with the
batch (TensorFlow, weights, Adam slots, kernels' scratch). The largest batch that fits in 24 GiB at
the largest size is extrapolated from that line (not verified: this machine has 23 GiB of RAM in
all, shared). On a GPU, TensorFlow's allocator (``tf.config.experimental.get_memory_info``) would
give the device's peak; CPU memory here also holds oneDNN's caches, so treat the GPU figure as an
estimate of the same order, not a promise. Timing: median of ``repeats`` short loops after a tracing
and a warm-up loop, wall and CPU time (the points are separate processes, so rounds cannot interleave
across sizes; compare sizes as orders of magnitude, not percent).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks.common import ROOT, environment, median
from benchmarks.training_common import finish_environment, shared_machine_note

# size -> (num_stages, (batch1, batch2), steps per timed loop)
POINTS = {
    "smoke": {16: (2, (1, 2), 1)},
    "quick": {28: (2, (8, 32), 2), 64: (4, (4, 16), 1), 128: (5, (1, 2), 1)},
    "full": {28: (2, (8, 32), 2), 64: (4, (4, 16), 1), 128: (5, (1, 2), 1), 256: (6, (1, 2), 1)},
}
BUDGET_BYTES = 24 * 2 ** 30
TARGET_PIXELS = 256
GIB = 2 ** 30


def model_config(pixels: int, stages: int, smoke: bool = False):
    """The paper preset's ModelConfig at ``pixels`` x ``pixels`` x 3 with ``stages`` stages (smoke: tiny widths)."""
    import dataclasses

    from keras_vae.config.presets import get_preset

    config = get_preset("paper-celeba-hq-256")
    model = dataclasses.replace(config.model, image_shape=(pixels, pixels, 3), num_stages=stages)
    if smoke:
        model = dataclasses.replace(model, filters=(8,), latent_dim=8, disc_filters=(8, 1), disc_strides=(2, 1))
    return dataclasses.replace(config, model=model)


def worker(pixels: int, stages: int, batch: int, steps: int, repeats: int, smoke: bool) -> dict:
    """One point, in this process: timings and memory (run by ``python -m benchmarks.scale_cost``)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import numpy as np
    import tensorflow as tf

    from benchmarks.training_common import current_rss_bytes, peak_rss_bytes, timed
    from benchmarks.flops import forward_flops
    from keras_vae.models import build_model

    keras.mixed_precision.set_global_policy("float32")
    config = model_config(pixels, stages, smoke)
    keras.utils.set_random_seed(0)
    model = build_model(config)
    model.compile_for_training(config.train)
    params = int(sum(np.prod(v.shape) for v in model.trainable_variables))
    x = tf.random.stateless_uniform((batch, pixels, pixels, 3), seed=(1, 2), minval=-1.0, maxval=1.0)
    step = tf.function(model.train_step)
    rss_before = current_rss_bytes()
    peak_before = peak_rss_bytes()

    def loop():
        for _ in range(steps):
            out = step(x)
        tf.nest.map_structure(np.asarray, out)

    loop()  # trace and first run
    loop()  # warm
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = timed(loop)
        walls.append(wall)
        cpus.append(cpu)
    images = steps * batch
    enc, dec, disc = (forward_flops(net) for net in (model.encoder, model.decoder, model.discriminator))
    return {"pixels": pixels, "num_stages": stages, "batch": batch, "steps": steps, "trainable_parameters": params,
            "img_per_s": images / median(walls), "cpu_ms_per_img": 1e3 * median(cpus) / images,
            "rounds_img_per_s": [images / w for w in walls],
            "rss_before_training_bytes": rss_before, "peak_rss_before_training_bytes": peak_before,
            "peak_rss_bytes": peak_rss_bytes(),
            "train_gflop_per_img": (3 * (enc + dec) + 8 * disc) / 1e9}


def _run_point(pixels, stages, batch, steps, repeats, smoke, log) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.scale_cost", str(pixels), str(stages), str(batch), str(steps),
           str(repeats)] + (["--smoke"] if smoke else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        log(f"[scale] {pixels}px batch {batch} failed (exit {proc.returncode}): {tail}")
        return {"pixels": pixels, "batch": batch, "error": tail, "returncode": proc.returncode}
    point = json.loads(lines[-1])
    log(f"[scale] {pixels}px batch {batch}: {point['img_per_s']:.2f} img/s, {point['cpu_ms_per_img']:.0f} CPU ms/img, "
        f"peak RSS {point['peak_rss_bytes'] / GIB:.2f} GiB")
    return point


def memory_line(p1: dict, p2: dict) -> dict:
    """Peak RSS as a line in the batch size through two points: bytes per image and the intercept."""
    slope = (p2["peak_rss_bytes"] - p1["peak_rss_bytes"]) / (p2["batch"] - p1["batch"])
    intercept = p1["peak_rss_bytes"] - slope * p1["batch"]
    return {"bytes_per_image": slope, "intercept_bytes": intercept}


def largest_batch(line: dict, budget: float = BUDGET_BYTES) -> int | None:
    """The largest batch with intercept + batch * bytes_per_image <= budget (None if memory does not grow)."""
    if line["bytes_per_image"] <= 0:
        return None
    return max(0, int((budget - line["intercept_bytes"]) // line["bytes_per_image"]))


def run(size: str = "quick", repeats: int = 3, log=print, **_) -> dict:
    env = environment()
    points = []
    for pixels, (stages, batches, steps) in POINTS[size].items():
        for batch in batches:
            points.append(_run_point(pixels, stages, batch, steps, repeats, size == "smoke", log))
    lines = {}
    for pixels in POINTS[size]:
        pair = [p for p in points if p["pixels"] == pixels and "error" not in p]
        if len(pair) == 2:
            line = memory_line(*pair)
            line["largest_batch_24gib"] = largest_batch(line)
            lines[str(pixels)] = line
    return {"suite": "scale", "size": size, "repeats": repeats, "precision": "float32",
            "preset": "paper-celeba-hq-256", "points": points, "memory": lines,
            "largest_pixels": max(POINTS[size]), "estimate_256": estimate(lines, TARGET_PIXELS),
            "environment": finish_environment(env)}


def estimate(lines: dict, pixels: int) -> dict | None:
    """Memory line at ``pixels`` extrapolated from the largest measured size: activations (and their
    gradients) grow with the pixel count at fixed widths, so bytes per image scale by (pixels / measured)^2;
    the intercept (runtime, weights, Adam slots) is kept. Also the growth measured between the two
    largest sizes, to check the square law. None when fewer than one size was measured."""
    sizes = sorted(int(k) for k in lines)
    if not sizes:
        return None
    top = sizes[-1]
    scale = (pixels / top) ** 2
    line = {"from_pixels": top, "bytes_per_image": lines[str(top)]["bytes_per_image"] * scale,
            "intercept_bytes": lines[str(top)]["intercept_bytes"]}
    line["largest_batch_24gib"] = largest_batch(line)
    if len(sizes) > 1:
        prev = sizes[-2]
        line["measured_growth"] = {"from": prev, "to": top, "bytes_per_image_ratio":
                                   lines[str(top)]["bytes_per_image"] / lines[str(prev)]["bytes_per_image"],
                                   "pixel_ratio": (top / prev) ** 2}
    return line


def to_markdown(result: dict) -> str:
    lines = ["# Cost growth of the paper's model with image size (`python -m benchmarks --suite scale`)", "",
             shared_machine_note(result["environment"]) + " float32; each point in its own process; img/s and CPU "
             f"time are medians of {result['repeats']} short loops after a tracing loop and a warm-up loop.", "",
             "| pixels | stages | params | batch | train GFLOP/img | img/s | CPU ms/img | peak RSS GiB | memory/img MiB (slope) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in result["points"]:
        if "error" in p:
            lines.append(f"| {p['pixels']} | | | {p['batch']} | | failed: {p['error']} | | | |")
            continue
        line = result["memory"].get(str(p["pixels"]))
        slope = f"{line['bytes_per_image'] / 2 ** 20:.0f}" if line else ""
        lines.append(f"| {p['pixels']} | {p['num_stages']} | {p['trainable_parameters'] / 1e6:.2f} M | {p['batch']} | "
                     f"{p['train_gflop_per_img']:.1f} | {p['img_per_s']:.2f} | {p['cpu_ms_per_img']:.0f} | "
                     f"{p['peak_rss_bytes'] / GIB:.2f} | {slope} |")
    big = result["memory"].get(str(result["largest_pixels"]))
    if big:
        lines += ["", f"At {result['largest_pixels']}x{result['largest_pixels']}: peak RSS ~ "
                  f"{big['intercept_bytes'] / GIB:.2f} GiB + {big['bytes_per_image'] / GIB:.3f} GiB per image, so the "
                  f"largest batch that fits in 24 GiB is about **{big['largest_batch_24gib']}** (extrapolated from two "
                  "batches, float32, CPU process memory; not verified)."]
    est = result.get("estimate_256")
    if est and result["largest_pixels"] < TARGET_PIXELS:
        growth = est.get("measured_growth")
        check = (f" (measured between {growth['from']} and {growth['to']} px: x{growth['bytes_per_image_ratio']:.2f} per "
                 f"image for x{growth['pixel_ratio']:.2f} pixels)" if growth else "")
        lines += ["", f"256x256 was not run (a float32 step there is ~{_gflop_256(result):.0f} GFLOP per image and this "
                  "machine has 23 GiB in all, shared). **Estimated** from the "
                  f"{est['from_pixels']}-px line with memory per image growing as the pixel count{check}: "
                  f"{est['intercept_bytes'] / GIB:.2f} GiB + {est['bytes_per_image'] / GIB:.2f} GiB per image, so about "
                  f"**{est['largest_batch_24gib']}** images per batch fit in 24 GiB."]
    return "\n".join(lines) + "\n"


def _gflop_256(result: dict) -> float:
    """Train GFLOP per image at 256 px, extrapolated x4 per doubling from the largest measured point."""
    top = max((p for p in result["points"] if "error" not in p), key=lambda p: p["pixels"], default=None)
    return top["train_gflop_per_img"] * (TARGET_PIXELS / top["pixels"]) ** 2 if top else float("nan")


def summary_rows(result: dict) -> list[list[str]]:
    rows = []
    by_pixels: dict[int, list] = {}
    for p in result.get("points", []):
        if "error" not in p:
            by_pixels.setdefault(p["pixels"], []).append(p)
    for pixels, pts in by_pixels.items():
        best = max(pts, key=lambda q: q["batch"])
        line = result["memory"].get(str(pixels))
        mem = f"{line['bytes_per_image'] / 2 ** 20:.0f} MiB/img" if line else "n/a"
        rows.append([f"paper model {pixels}px", f"train img/s at batch {best['batch']}, float32 (memory {mem})",
                     f"{best['img_per_s']:.2f}", "", ""])
    big = result.get("memory", {}).get(str(result.get("largest_pixels")))
    est = result.get("estimate_256")
    if result.get("largest_pixels", 0) >= TARGET_PIXELS and big:
        rows.append([f"paper model {result['largest_pixels']}px", "largest batch in 24 GiB (from two batches)",
                     str(big["largest_batch_24gib"]), "", ""])
    elif est:
        rows.append([f"paper model {TARGET_PIXELS}px", f"largest batch in 24 GiB (estimated from {est['from_pixels']} px)",
                     str(est["largest_batch_24gib"]), "", ""])
    return rows


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--smoke"]
    print(json.dumps(worker(*(int(a) for a in args), smoke="--smoke" in sys.argv[1:])), flush=True)
