"""Training speed and reconstruction at equal steps: float32 vs mixed_bfloat16 (the VAEGAN, one process).

    PYTHONPATH=. python -m benchmarks --suite precision [--size quick|full] [--repeats 3]

quick: the mnist-28 preset on the embedded MNIST digits; full adds celeba-64 (64x64x3) on the digits
resized to 64x64 and tiled to 3 channels (speed depends on the shapes; the quality number there is
only a sanity check). Both models start from the same seed; each round trains every policy for the
same number of steps (interleaved: float32, bf16, float32, ...), so after the last round both have
seen the same batches. Reports images/s (median over rounds) and the validation reconstruction mean
absolute error (images in [0, 1]) of both at the end. Also records what ``--precision auto`` picks here.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import environment, median

POLICIES = ("float32", "mixed_bfloat16")
PRESETS = {"quick": ("mnist-28",), "full": ("mnist-28", "celeba-64")}
STEPS = {"mnist-28": 20, "celeba-64": 3}  # steps per policy per round


def _digits(shape, n: int, offset: int) -> np.ndarray:
    """n embedded MNIST digits as float images in [0, 1] of ``shape`` (resized and tiled as needed)."""
    import tensorflow as tf

    from keras_vae.data.embedded import load_embedded_mnist

    images = load_embedded_mnist()[0][offset:offset + n].astype(np.float32)[..., None] / 255.0
    if images.shape[1:3] != tuple(shape[:2]):
        images = tf.image.resize(images, shape[:2]).numpy()
    return np.clip(np.repeat(images, shape[2], axis=-1), 0.0, 1.0)


def bench_preset(preset: str, repeats: int, log=print) -> dict:
    import keras

    from keras_vae.models import build_model
    from keras_vae.presets import get_preset

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
    for r in range(repeats):
        for policy, model in models.items():
            start = time.perf_counter()
            model.fit(train, batch_size=batch, epochs=1, verbose=0, shuffle=False)
            speed[policy].append(len(train) / (time.perf_counter() - start))
        log(f"[{preset}] round {r + 1}/{repeats}: " + ", ".join(f"{p} {v[-1]:.1f} img/s" for p, v in speed.items()))
    quality = {}
    for policy, model in models.items():
        mean, _ = model.encode(model.from_unit(val), training=False)
        recon = np.asarray(model.to_unit(model.decode(mean, training=False)), dtype=np.float32)
        quality[policy] = float(np.mean(np.abs(recon - val)))
    return {"preset": preset, "image_shape": list(shape), "batch": batch, "steps_per_round": steps,
            "total_steps": 1 + repeats * steps,
            "images_per_s": {p: median(v) for p, v in speed.items()}, "rounds": speed,
            "speedup_bf16": median(speed["mixed_bfloat16"]) / median(speed["float32"]),
            "validation_reconstruction_mae": quality}


def run(size: str = "quick", repeats: int = 3, log=print, **_) -> dict:
    import os

    import tensorflow as tf

    from keras_vae.precision import resolve_precision

    policy, reason = resolve_precision("auto")
    result = {"suite": "precision", "size": size, "repeats": repeats, "environment": environment(),
              "versions": {"tensorflow": tf.__version__}, "auto": {"policy": policy, "reason": reason}, "presets": {}}
    for preset in PRESETS[size]:
        result["presets"][preset] = bench_preset(preset, repeats, log)
    result["environment"]["loadavg_end"] = list(os.getloadavg())
    return result


def to_markdown(result: dict) -> str:
    env = result["environment"]
    lines = ["# Training precision (`python -m benchmarks --suite precision`)", "",
             f"{env['cpu']}, {env['cpu_count']} cores ({', '.join(env['cpu_flags'])}); TensorFlow "
             f"{result['versions']['tensorflow']}. `--precision auto` here: **{result['auto']['policy']}** "
             f"({result['auto']['reason']}). Medians over {result['repeats']} interleaved rounds; load average "
             f"{env['loadavg'][0]:.1f} at start, {env['loadavg_end'][0]:.1f} at end.", "",
             "| preset | batch | steps (each) | float32 img/s | bf16 img/s | speed-up | recon MAE float32 | recon MAE bf16 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for preset, p in result["presets"].items():
        q = p["validation_reconstruction_mae"]
        lines.append(f"| {preset} | {p['batch']} | {p['total_steps']} | {p['images_per_s']['float32']:.1f} | "
                     f"{p['images_per_s']['mixed_bfloat16']:.1f} | {p['speedup_bf16']:.2f}x | {q['float32']:.4f} | "
                     f"{q['mixed_bfloat16']:.4f} |")
    return "\n".join(lines) + "\n"


def summary_rows(result: dict) -> list[list[str]]:
    rows = []
    for preset, p in result.get("presets", {}).items():
        q = p["validation_reconstruction_mae"]
        rows.append([f"training {preset}", f"img/s mixed_bfloat16 vs float32 (recon MAE {q['mixed_bfloat16']:.3f} "
                     f"vs {q['float32']:.3f} after {p['total_steps']} steps)",
                     f"{p['images_per_s']['mixed_bfloat16']:.1f}", f"{p['images_per_s']['float32']:.1f}",
                     f"{p['speedup_bf16']:.2f}x"])
    return rows
