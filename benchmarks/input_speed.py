"""Does ``fit`` on the tf.data input pipeline keep up with ``fit`` on in-memory tensors? (embedded source, JPEG folder)

    PYTHONPATH=. python -m benchmarks --suite input [--size quick|full] [--repeats 3]

For each model (quick: mnist-28 at 28x28x1 and celeba-64-progressive at 64x64x3, float32; the
celeba-64 preset itself is 4x the FLOPs and would only make the input share smaller) a folder of
JPEGs at the model's size is written to a temporary directory (quick: 2,000; full: 5,000; the
embedded MNIST digits, resized and colour-tinted for RGB, quality 95), and three inputs are timed
in interleaved rounds of the same number of training steps:

- ``embedded``: ``source="embedded"`` through ``keras_vae.data.make_datasets`` (the digits resized to
  the model's size inside the pipeline);
- ``folder``: ``source="folder:TMP"`` (decode in parallel, cache, shuffle, batch, prefetch);
- ``in-memory``: the folder pipeline's own batches collected once into one float32 array, passed to
  ``fit`` (``shuffle=False``).

The pipelines' caches are filled by a first full epoch of the pipeline alone (no model), timed
separately: its images/s (JPEG decoding included) is what the input side can deliver before the
cache exists, to be compared with the model's training images/s. Reports images/s (wall) and process
CPU ms per image, and the per-round ratios pipeline / in-memory (goal: >= 0.95).
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from benchmarks.common import environment, median
from benchmarks.training_common import finish_environment, interleaved, shared_machine_note, timed

PRESETS = {"smoke": ("tiny",), "quick": ("mnist-28", "celeba-64-progressive"),
           "full": ("mnist-28", "celeba-64-progressive")}
NUM_FILES = {"smoke": 40, "quick": 2000, "full": 5000}
STEPS = {"tiny": 2, "mnist-28": 40, "celeba-64-progressive": 8}  # training steps per input per round
INPUTS = ("embedded", "folder", "in-memory")


def write_jpegs(folder: str, shape, count: int) -> None:
    """``count`` JPEGs of the embedded digits at ``shape`` (H, W, C) under ``folder`` (RGB: tinted per image)."""
    from PIL import Image

    from keras_vae.data.embedded import load_embedded_mnist

    digits = load_embedded_mnist()[0]
    height, width, channels = shape
    rng = np.random.default_rng(0)
    for i in range(count):
        image = Image.fromarray(digits[i % len(digits)])
        if (height, width) != (28, 28):
            image = image.resize((width, height), Image.BILINEAR)
        if channels == 3:
            grey = np.asarray(image, np.float32)[..., None] / 255.0
            tint = rng.uniform(0.3, 1.0, size=3)
            background = rng.uniform(0.0, 0.4, size=3)
            rgb = background * (1 - grey) + tint * grey
            image = Image.fromarray(np.round(rgb * 255).astype(np.uint8), "RGB")
        image.save(os.path.join(folder, f"{i:05d}.jpg"), quality=95)


def bench_preset(preset: str, size: str, repeats: int, log=print) -> dict:
    import keras

    from keras_vae.config import merge
    from keras_vae.data import DataConfig, make_datasets
    from keras_vae.models import build_model
    from keras_vae.config.presets import get_preset

    config = merge(get_preset(preset), {"train": {"precision": "float32"}})
    shape, batch, steps = tuple(config.model.image_shape), config.train.batch_size, STEPS[preset]
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    with tempfile.TemporaryDirectory(prefix="keras-vae-input-bench-") as folder:
        try:
            write_jpegs(folder, shape, NUM_FILES[size])
            datasets = {}
            for name, source in (("embedded", "embedded"), ("folder", f"folder:{folder}")):
                data = make_datasets(DataConfig(source=source, flip=config.data.flip), image_shape=shape,
                                     value_range=config.model.value_range, batch_size=batch, seed=0)
                datasets[name] = data
            folder_data = datasets["folder"]
            arrays = np.concatenate([b.numpy() for b in folder_data.validation.take(steps)]
                                    + [b.numpy() for b in folder_data.train.take(steps)], axis=0)[:steps * batch]
            keras.utils.set_random_seed(0)
            model = build_model(config)
            model.compile_for_training(config.train)
            model.fit(arrays[:2 * batch], batch_size=batch, epochs=1, verbose=0, shuffle=False)  # trace
            # first epoch of each pipeline alone (no training): decoding every image once fills the cache
            first = {}
            for name, data in datasets.items():
                wall, cpu = timed(lambda: sum(1 for _ in data.train))
                first[name] = {"images": data.num_train, "img_per_s": data.num_train / wall,
                               "cpu_ms_per_img": 1e3 * cpu / data.num_train}
                log(f"[{preset}] first epoch of {name}, pipeline alone: {first[name]['img_per_s']:.0f} img/s")
            repeated = {name: data.train.repeat() for name, data in datasets.items()}
            calls = {
                "embedded": lambda: model.fit(repeated["embedded"], steps_per_epoch=steps, epochs=1, verbose=0),
                "folder": lambda: model.fit(repeated["folder"], steps_per_epoch=steps, epochs=1, verbose=0),
                "in-memory": lambda: model.fit(arrays, batch_size=batch, epochs=1, verbose=0, shuffle=False),
            }
            for name in ("embedded", "folder"):  # each input kind traces its own train function once
                model.fit(repeated[name], steps_per_epoch=1, epochs=1, verbose=0)
            timing = interleaved(calls, steps * batch, repeats, log, preset)
        finally:
            keras.mixed_precision.set_global_policy(previous)
    mem = timing["in-memory"]["rounds"]
    ratios = {}
    for name in ("embedded", "folder"):
        r = timing[name]["rounds"]
        ratios[name] = {"speed": [a / b for a, b in zip(r["img_per_s"], mem["img_per_s"])],
                        "cpu": [b / a for a, b in zip(r["cpu_ms_per_img"], mem["cpu_ms_per_img"])]}
        ratios[name]["speed_median"] = median(ratios[name]["speed"])
        ratios[name]["cpu_median"] = median(ratios[name]["cpu"])
    return {"preset": preset, "image_shape": list(shape), "batch": batch, "steps_per_round": steps,
            "num_files": NUM_FILES[size], "num_train": datasets["folder"].num_train,
            "sources": {k: d.description for k, d in datasets.items()}, "first_epoch": first,
            "inputs": timing, "ratio_vs_in_memory": ratios}


def run(size: str = "quick", repeats: int = 3, log=print, presets=None, **_) -> dict:
    import tensorflow as tf

    env = environment()
    result = {"suite": "input", "size": size, "repeats": repeats, "versions": {"tensorflow": tf.__version__},
              "presets": {}}
    for preset in presets or PRESETS[size]:
        result["presets"][preset] = bench_preset(preset, size, repeats, log)
    result["environment"] = finish_environment(env)
    return result


def _verdict(ratios: list[float]) -> str:
    return "met" if min(ratios) >= 0.95 else "not met" if max(ratios) < 0.95 else "undecided (rounds disagree)"


def to_markdown(result: dict) -> str:
    lines = ["# Input pipeline vs in-memory tensors (`python -m benchmarks --suite input`)", "",
             shared_machine_note(result["environment"]) + f" float32; medians of {result['repeats']} interleaved "
             "rounds of the same number of steps; ratios are per-round (pipeline / in-memory speed, in-memory / "
             "pipeline CPU per image), goal >= 0.95.", "",
             "| model | batch | input | img/s | CPU ms/img | speed ratio (rounds) | CPU ratio | goal (wall) |",
             "|---|---:|---|---:|---:|---|---:|---|"]
    for preset, p in result["presets"].items():
        for name, v in p["inputs"].items():
            if name == "in-memory":
                lines.append(f"| {preset} | {p['batch']} | in-memory array | {v['img_per_s']:.1f} | "
                             f"{v['cpu_ms_per_img']:.2f} | | | |")
                continue
            r = p["ratio_vs_in_memory"][name]
            lines.append(f"| {preset} | {p['batch']} | {name} | {v['img_per_s']:.1f} | {v['cpu_ms_per_img']:.2f} | "
                         f"{r['speed_median']:.3f} ({', '.join(f'{x:.2f}' for x in r['speed'])}) | "
                         f"{r['cpu_median']:.3f} | {_verdict(r['speed'])} |")
    lines += ["", "First epoch of the pipeline alone, no model (decodes every image once and fills the cache), "
              "against the model's training speed on in-memory data above:", "",
              "| model | input | images | pipeline img/s | CPU ms/img | training img/s (in-memory) |",
              "|---|---|---:|---:|---:|---:|"]
    for preset, p in result["presets"].items():
        for name, f in p["first_epoch"].items():
            cpu = "" if f.get("cpu_ms_per_img") is None else f"{f['cpu_ms_per_img']:.3f}"
            lines.append(f"| {preset} | {name} | {f['images']} | {f['img_per_s']:.0f} | {cpu} | "
                         f"{p['inputs']['in-memory']['img_per_s']:.1f} |")
    lines += ["", "Sources: " + "; ".join(f"{p['preset']}: " + ", ".join(p["sources"].values())
                                          for p in result["presets"].values()) + "."]
    if result.get("note"):
        lines += ["", f"**Note:** {result['note']}"]
    return "\n".join(lines) + "\n"


def summary_rows(result: dict) -> list[list[str]]:
    rows = []
    for preset, p in result.get("presets", {}).items():
        mem = p["inputs"]["in-memory"]
        for name in ("embedded", "folder"):
            r = p["ratio_vs_in_memory"][name]
            what = "embedded source" if name == "embedded" else f"JPEG folder ({p['num_files']} files)"
            count = len(r["speed"])
            what += f" ({count} round{'s' if count != 1 else ''}; see input_speed.md)" if count < result["repeats"] else ""
            rows.append([f"input pipeline {preset}", f"fit img/s: {what} vs in-memory array",
                         f"{p['inputs'][name]['img_per_s']:.1f}", f"{mem['img_per_s']:.1f}",
                         f"{r['speed_median']:.2f}x (CPU {r['cpu_median']:.2f}x)"])
    return rows
