"""Input pipeline vs in-memory tensors: does ``fit`` on the tf.data pipeline keep the model busy?

    PYTHONPATH=. python -m benchmarks --suite pipeline [--repeats 3]

The mnist-28 VAEGAN preset is trained for the same number of steps per round (a) on the embedded
source through ``keras_vae.data.make_datasets`` (decode, scale, shuffle, batch, prefetch) and
(b) on the same images already scaled, as one in-memory float32 array passed to ``fit``; rounds
alternate a, b, a, b. The goal (issue 12) is (a) >= 95% of (b). The image-folder (JPEG) and
celeba-64 cases of the issue are not measured here yet.
"""
from __future__ import annotations

import time

import numpy as np

from benchmarks.common import environment, median

PRESET, STEPS = "mnist-28", 20


def run(size: str = "quick", repeats: int = 3, log=print, **_) -> dict:
    import os

    import keras
    import tensorflow as tf

    from keras_vae.config import merge
    from keras_vae.data import make_datasets
    from keras_vae.models import build_model
    from keras_vae.presets import get_preset

    config = merge(get_preset(PRESET), {"train": {"precision": "float32"}})
    batch = config.train.batch_size
    data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                         batch_size=batch, seed=0)
    pipeline = data.train.repeat()
    arrays = np.concatenate([b.numpy() for b in data.train.take(STEPS)], axis=0)
    keras.utils.set_random_seed(0)
    model = build_model(config)
    model.compile_for_training(config.train)
    model.fit(pipeline, steps_per_epoch=2, epochs=1, verbose=0)  # trace both input kinds once
    model.fit(arrays[:2 * batch], batch_size=batch, epochs=1, verbose=0, shuffle=False)
    speed: dict[str, list[float]] = {"pipeline": [], "in-memory": []}
    for r in range(repeats):
        start = time.perf_counter()
        model.fit(pipeline, steps_per_epoch=STEPS, epochs=1, verbose=0)
        speed["pipeline"].append(STEPS * batch / (time.perf_counter() - start))
        start = time.perf_counter()
        model.fit(arrays, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        speed["in-memory"].append(STEPS * batch / (time.perf_counter() - start))
        log(f"[pipeline] round {r + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.1f} img/s" for k, v in speed.items()))
    env = environment()
    env["loadavg_end"] = list(os.getloadavg())
    return {"suite": "pipeline", "size": size, "repeats": repeats, "environment": env,
            "versions": {"tensorflow": tf.__version__}, "preset": PRESET, "batch": batch, "steps": STEPS,
            "source": data.description, "images_per_s": {k: median(v) for k, v in speed.items()}, "rounds": speed,
            "ratio": paired_ratio(speed)}


def paired_ratio(speed: dict[str, list[float]]) -> float:
    """Median over rounds of pipeline / in-memory speed in the same round (paired: shares that round's load)."""
    return median([a / b for a, b in zip(speed["pipeline"], speed["in-memory"])])


def to_markdown(result: dict) -> str:
    env = result["environment"]
    ips = result["images_per_s"]
    ratios = [a / b for a, b in zip(result["rounds"]["pipeline"], result["rounds"]["in-memory"])]
    verdict = "met" if min(ratios) >= 0.95 else "not met" if max(ratios) < 0.95 else "undecided (rounds disagree)"
    return "\n".join([
        "# Input pipeline vs in-memory tensors (`python -m benchmarks --suite pipeline`)", "",
        f"{env['cpu']}, {env['cpu_count']} cores; TensorFlow {result['versions']['tensorflow']}; {result['preset']} "
        f"VAEGAN, float32, batch {result['batch']}, {result['steps']} steps per round, medians of {result['repeats']} "
        f"interleaved rounds; load average {env['loadavg'][0]:.1f} at start, {env['loadavg_end'][0]:.1f} at end.", "",
        "| input | images/s |", "|---|---:|",
        f"| {result['source']} through the tf.data pipeline | {ips['pipeline']:.1f} |",
        f"| the same images as one in-memory array | {ips['in-memory']:.1f} |", "",
        f"Pipeline / in-memory (median of per-round ratios): {result['ratio']:.2f}; per-round ratios "
        f"{', '.join(f'{r:.2f}' for r in ratios)}; goal >= 0.95: **{verdict}**. Each round's fit call also "
        "builds its iterator (the pipeline refills its shuffle buffer), which weighs on short rounds.", ""])


def summary_rows(result: dict) -> list[list[str]]:
    ips = result["images_per_s"]
    return [[f"input pipeline {result['preset']}", "fit img/s: embedded source pipeline vs in-memory array",
             f"{ips['pipeline']:.1f}", f"{ips['in-memory']:.1f}", f"{result['ratio']:.2f}x"]]
