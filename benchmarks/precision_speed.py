"""Training speed and reconstruction at equal steps: float32 vs mixed_bfloat16 (the VAEGAN, one process).

    PYTHONPATH=. python -m benchmarks --suite precision [--size quick|full] [--repeats 3]

quick: the mnist-28 preset and celeba-64-progressive (64x64x3, the channel-progressive paper model:
celeba-64 itself is 4x the FLOPs) on the embedded MNIST digits (resized to 64x64 and colour-tinted
per image for RGB: real images, not faces); full adds celeba-64. Both models of a preset start from
the same seed (same initial weights); each round trains every policy for the same steps on the
same batches (interleaved: float32, bf16, float32, ...), so after the last round both have seen
the same data. Reports images/s and process CPU ms per image (medians over rounds), and the
validation reconstruction error of both at the end (posterior mean, images in [0, 1]): mean
absolute error and PSNR = mean over images of 10 log10(1 / MSE). Also records what
``--precision auto`` picks here.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import environment, median

POLICIES = ("float32", "mixed_bfloat16")
PRESETS = {"smoke": ("tiny",), "quick": ("mnist-28", "celeba-64-progressive"),
           "full": ("mnist-28", "celeba-64-progressive", "celeba-64")}
STEPS = {"tiny": 1, "mnist-28": 40, "celeba-64-progressive": 10, "celeba-64": 3}  # steps per policy per round


def _digits(shape, n: int, offset: int) -> np.ndarray:
    """n embedded MNIST digits as float images in [0, 1] of ``shape`` (resized and tiled as needed)."""
    import tensorflow as tf

    from keras_vae.data.embedded import load_embedded_mnist

    images = load_embedded_mnist()[0][offset:offset + n].astype(np.float32)[..., None] / 255.0
    if images.shape[1:3] != tuple(shape[:2]):
        images = tf.image.resize(images, shape[:2]).numpy()
    if shape[2] == 3:  # colour: a random ink and background colour per image (fixed seed)
        rng = np.random.default_rng(offset)
        ink, paper = rng.uniform(0.3, 1.0, (n, 1, 1, 3)), rng.uniform(0.0, 0.4, (n, 1, 1, 3))
        images = paper * (1.0 - images) + ink * images
    return np.clip(images, 0.0, 1.0).astype(np.float32)


def psnr(reconstructions: np.ndarray, images: np.ndarray) -> float:
    """Mean over images of 10 log10(1 / MSE) for images in [0, 1] (dB)."""
    mse = np.mean(np.square(reconstructions - images).reshape(len(images), -1), axis=1)
    return float(np.mean(10.0 * np.log10(1.0 / np.maximum(mse, 1e-12))))


def bench_preset(preset: str, repeats: int, log=print) -> dict:
    import keras

    from keras_vae.models import build_model
    from keras_vae.config.presets import get_preset

    config = get_preset(preset)
    shape, batch = config.model.image_shape, config.train.batch_size
    steps = STEPS[preset]
    low, high = config.model.value_range
    train = _digits(shape, batch * steps, 0) * (high - low) + low
    val = _digits(shape, 256, 4000)
    previous = keras.mixed_precision.global_policy()
    models = {}
    try:
        for policy in POLICIES:
            keras.mixed_precision.set_global_policy(policy)
            keras.utils.set_random_seed(0)
            model = build_model(config)
            model.compile_for_training(config.train)
            model.fit(train[:batch], batch_size=batch, epochs=1, verbose=0, shuffle=False)  # trace, build
            models[policy] = model
    finally:
        keras.mixed_precision.set_global_policy(previous)
    speed: dict[str, list[float]] = {p: [] for p in POLICIES}
    cpu: dict[str, list[float]] = {p: [] for p in POLICIES}
    for r in range(repeats):
        for policy, model in models.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            model.fit(train, batch_size=batch, epochs=1, verbose=0, shuffle=False)
            speed[policy].append(len(train) / (time.perf_counter() - start))
            cpu[policy].append(1e3 * (time.process_time() - start_cpu) / len(train))
        log(f"[{preset}] round {r + 1}/{repeats}: " + ", ".join(
            f"{p} {v[-1]:.1f} img/s {cpu[p][-1]:.2f} CPU ms/img" for p, v in speed.items()))
    quality, quality_psnr = {}, {}
    for policy, model in models.items():
        mean, _ = model.encode(model.from_unit(val), training=False)
        recon = np.asarray(model.to_unit(model.decode(mean, training=False)), dtype=np.float32)
        quality[policy] = float(np.mean(np.abs(recon - val)))
        quality_psnr[policy] = psnr(recon, val)
    return {"preset": preset, "image_shape": list(shape), "batch": batch, "steps_per_round": steps,
            "total_steps": 1 + repeats * steps, "validation_images": len(val),
            "images_per_s": {p: median(v) for p, v in speed.items()}, "rounds": speed,
            "cpu_ms_per_img": {p: median(v) for p, v in cpu.items()}, "cpu_rounds": cpu,
            "speedup_bf16": median(speed["mixed_bfloat16"]) / median(speed["float32"]),
            "cpu_speedup_bf16": median([a / b for a, b in zip(cpu["float32"], cpu["mixed_bfloat16"])]),
            "validation_reconstruction_mae": quality, "validation_psnr_db": quality_psnr}


def run(size: str = "quick", repeats: int = 3, log=print, presets=None, **_) -> dict:
    import os

    import tensorflow as tf

    from keras_vae.training.precision import resolve_precision

    policy, reason = resolve_precision("auto")
    result = {"suite": "precision", "size": size, "repeats": repeats, "environment": environment(),
              "versions": {"tensorflow": tf.__version__}, "auto": {"policy": policy, "reason": reason}, "presets": {}}
    for preset in presets or PRESETS[size]:
        result["presets"][preset] = bench_preset(preset, repeats, log)
    result["environment"]["loadavg_end"] = list(os.getloadavg())
    return result


def to_markdown(result: dict) -> str:
    env = result["environment"]
    lines = ["# Training precision (`python -m benchmarks --suite precision`)", "",
             f"{env['cpu']}, {env['cpu_count']} cores ({', '.join(env['cpu_flags'])}); TensorFlow "
             f"{result['versions']['tensorflow']}. `--precision auto` here: **{result['auto']['policy']}** "
             f"({result['auto']['reason']}). Medians over {result['repeats']} interleaved rounds; load average "
             f"{env['loadavg'][0]:.1f} at start, {env['loadavg_end'][0]:.1f} at end (the machine was shared with "
             "about 6 other engineers' jobs: wall img/s are inflated by contention, CPU ms per image much less so).", "",
             "| preset | batch | steps (each) | float32 img/s | bf16 img/s | speed-up (wall) | float32 CPU ms/img | "
             "bf16 CPU ms/img | speed-up (CPU) | recon MAE float32 | recon MAE bf16 | PSNR float32 dB | PSNR bf16 dB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for preset, p in result["presets"].items():
        q, db = p["validation_reconstruction_mae"], p.get("validation_psnr_db")
        c = p.get("cpu_ms_per_img")
        lines.append(f"| {preset} | {p['batch']} | {p['total_steps']} | {p['images_per_s']['float32']:.1f} | "
                     f"{p['images_per_s']['mixed_bfloat16']:.1f} | {p['speedup_bf16']:.2f}x | "
                     + (f"{c['float32']:.2f} | {c['mixed_bfloat16']:.2f} | {p['cpu_speedup_bf16']:.2f}x | " if c
                        else "| | | ")
                     + f"{q['float32']:.4f} | {q['mixed_bfloat16']:.4f} | "
                     + (f"{db['float32']:.2f} | {db['mixed_bfloat16']:.2f} |" if db else "| |"))
    lines += ["", "Reconstruction: validation images (embedded digits not used for training), posterior mean "
              "decoded, [0, 1] scale; both precisions after the same steps on the same batches from the same "
              "initial weights."]
    return "\n".join(lines) + "\n"


def summary_rows(result: dict) -> list[list[str]]:
    rows = []
    for preset, p in result.get("presets", {}).items():
        q = p["validation_reconstruction_mae"]
        db = p.get("validation_psnr_db")
        psnr_text = f", PSNR {db['mixed_bfloat16']:.2f} vs {db['float32']:.2f} dB" if db else ""
        rows.append([f"training {preset}", f"img/s mixed_bfloat16 vs float32 (recon MAE {q['mixed_bfloat16']:.3f} "
                     f"vs {q['float32']:.3f}{psnr_text} after {p['total_steps']} steps)",
                     f"{p['images_per_s']['mixed_bfloat16']:.1f}", f"{p['images_per_s']['float32']:.1f}",
                     f"{p['speedup_bf16']:.2f}x"])
    return rows
