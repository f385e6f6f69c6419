"""Training throughput of the VAEGAN train_step against a plain baseline, in one process.

    PYTHONPATH=. python benchmarks/bench_vaegan.py [--quick] [--out benchmarks/results]

For each size (celeba-64: 64x64x3, 128 filters, latent 128, batch 16; mnist-28: the preset) and
each variant (float32, mixed_bfloat16, float32 + XLA) it times
  - ``vaegan``:   keras_vae's ``VAEGAN.train_step`` (alternating D then VAE update, two optimizers),
  - ``baseline``: the same networks and losses written plainly, as the reference code does (two
                  GradientTapes in one tf.function, simultaneous D and VAE updates),
reporting the median (and best) images/s over interleaved repeats, the ratio, and the achieved
GFLOP/s against a float32 matmul rate measured in the same run. Train-step FLOPs per image are
model FLOPs: 3 x the forward FLOPs of encoder + decoder (forward, input and weight gradients) plus
8 x the discriminator's forward (D on real and fake, their backward, and the generator's backward
through D); forward FLOPs come from TF's graph profiler on inference graphs. Also reports the
FLOPs per image of the channel-progressive preset.
Writes bench_vaegan.json and bench_vaegan.md. Not a test.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.flops import forward_flops  # noqa: E402
from keras_vae.models.patchgan import build_patchgan  # noqa: E402
from keras_vae.models.resnet import build_resnet_decoder, build_resnet_encoder  # noqa: E402
from keras_vae.models.vaegan import VAEGAN  # noqa: E402
from keras_vae.config.presets import get_preset  # noqa: E402


def matmul_rate(n: int = 2048, dtype=tf.float32, repeats: int = 5) -> float:
    """GFLOP/s of an n x n matmul (median of repeats)."""
    a = tf.random.normal([n, n], dtype=tf.float32)
    a = tf.cast(a, dtype)
    fn = tf.function(lambda x: tf.matmul(x, x))
    fn(a).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(5):
            out = fn(a)
        out.numpy()
        times.append((time.perf_counter() - start) / 5)
    return 2 * n ** 3 / statistics.median(times) / 1e9


class Baseline:
    """The paper's model trained the plain way: one forward pass, two tapes, both updates at once."""

    def __init__(self, config, loss, train):
        self.encoder = build_resnet_encoder(config)
        self.decoder = build_resnet_decoder(config)
        self.discriminator = build_patchgan(config)
        self.loss = loss
        self.g_opt = keras.optimizers.Adam(train.learning_rate, beta_1=train.beta_1)
        self.d_opt = keras.optimizers.Adam(train.disc_learning_rate, beta_1=train.disc_beta_1)
        self.vae_vars = self.encoder.trainable_variables + self.decoder.trainable_variables
        self.d_vars = self.discriminator.trainable_variables
        self.g_opt.build(self.vae_vars)
        self.d_opt.build(self.d_vars)

    def step(self, x):
        lc = self.loss
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            mean, log_var = self.encoder(x, training=True)
            mean, log_var = tf.cast(mean, tf.float32), tf.cast(log_var, tf.float32)
            z = mean + tf.exp(0.5 * log_var) * tf.random.normal(tf.shape(mean))
            x_hat = tf.cast(self.decoder(z, training=True), tf.float32)
            real = tf.cast(self.discriminator(x, training=True), tf.float32)
            fake = tf.cast(self.discriminator(x_hat, training=True), tf.float32)
            r_loss = lc.reconstruction_weight * tf.reduce_mean(tf.abs(x - x_hat))
            m = tf.reduce_mean(mean, 0)
            v = tf.math.reduce_variance(mean, 0) + 1e-6
            kl = 0.5 * tf.reduce_sum(tf.square(m) + v - 1.0 - tf.math.log(v))
            var_reg = lc.variance_weight * tf.reduce_mean(tf.reduce_sum(tf.exp(log_var) - 1.0 - log_var, -1))
            bce = keras.losses.BinaryCrossentropy(from_logits=True)
            g_adv = lc.adversarial_weight * bce(tf.ones_like(fake), fake)
            g_loss = r_loss + kl + var_reg + g_adv
            d_loss = lc.adversarial_weight * (bce(tf.ones_like(real), real) + bce(tf.zeros_like(fake), fake))
        self.g_opt.apply(g_tape.gradient(g_loss, self.vae_vars), self.vae_vars)
        self.d_opt.apply(d_tape.gradient(d_loss, self.d_vars), self.d_vars)
        return g_loss, d_loss


def train_flops_per_image(config) -> dict:
    """Forward FLOPs of encoder, decoder, discriminator and the train step's model FLOPs, per image."""
    enc, dec, disc = (forward_flops(build(config.model)) for build in
                      (build_resnet_encoder, build_resnet_decoder, build_patchgan))
    return {"encoder_forward": enc, "decoder_forward": dec, "discriminator_forward": disc,
            "train_step": 3 * (enc + dec) + 8 * disc}


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def time_steps(step, x, steps: int, repeats: int) -> list[tuple[float, float]]:
    """(images/s of wall time, CPU seconds of this process per image) for each repeat of ``steps``
    calls, after two warm-up calls. CPU time is less sensitive than wall time to other processes."""
    for _ in range(2):
        out = step(x)
    tf.nest.map_structure(lambda t: np.asarray(t), out)
    rates = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(steps):
            out = step(x)
        tf.nest.map_structure(lambda t: np.asarray(t), out)
        images = steps * int(x.shape[0])
        rates.append((images / (time.perf_counter() - start), (time.process_time() - cpu) / images))
    return rates


def sizes(quick: bool):
    celeba = get_preset("celeba-64")
    mnist = get_preset("mnist-28")
    return {
        "celeba-64": (celeba, 1 if quick else 2, 3 if quick else 5),
        "mnist-28": (mnist, 5 if quick else 10, 3 if quick else 7),
    }


def run(args) -> dict:
    results = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "cpu_count": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__},
               "matmul_gflops": {"float32": matmul_rate(), "bfloat16": matmul_rate(dtype=tf.bfloat16)},
               "runs": [], "flops_per_image": {}, "load_average_start": load_average()}
    print("matmul GFLOP/s", results["matmul_gflops"], flush=True)
    variants = [("float32", "float32", False), ("mixed_bfloat16", "mixed_bfloat16", False), ("xla", "float32", True)]
    for size, (config, steps, repeats) in sizes(args.quick).items():
        batch = config.train.batch_size
        x = tf.random.uniform((batch,) + tuple(config.model.image_shape), -1.0, 1.0)
        results["flops_per_image"][size] = train_flops_per_image(config)
        flops = results["flops_per_image"][size]["train_step"]
        for variant, policy, jit in variants:
            keras.mixed_precision.set_global_policy(policy)
            try:
                keras.utils.set_random_seed(0)
                model = VAEGAN(config.model, config.loss, seed=0)
                model.compile_for_training(dataclasses.replace(config.train, jit_compile=jit))
                ours = tf.function(model.train_step, jit_compile=jit)
                keras.utils.set_random_seed(0)
                baseline = Baseline(config.model, config.loss, config.train)
                plain = tf.function(baseline.step, jit_compile=jit)
                # interleave the two so drift in machine load hits both alike
                rates = {"vaegan": [], "baseline": []}
                for _ in range(repeats):
                    rates["vaegan"] += time_steps(ours, x, steps, 1)
                    rates["baseline"] += time_steps(plain, x, steps, 1)
            finally:
                keras.mixed_precision.set_global_policy("float32")
            row = {"size": size, "variant": variant, "batch": batch, "steps_per_repeat": steps, "repeats": repeats}
            for name, pairs in rates.items():
                values = [p[0] for p in pairs]
                med = statistics.median(values)
                row[name] = {"img_per_s": med, "best_img_per_s": max(values), "all": values,
                             "cpu_ms_per_img": 1000 * statistics.median(p[1] for p in pairs),
                             "gflops": med * flops / 1e9,
                             "fraction_of_f32_matmul": med * flops / 1e9 / results["matmul_gflops"]["float32"]}
            row["ratio_vaegan_over_baseline"] = row["vaegan"]["img_per_s"] / row["baseline"]["img_per_s"]
            row["ratio_best"] = row["vaegan"]["best_img_per_s"] / row["baseline"]["best_img_per_s"]
            row["cpu_ratio_baseline_over_vaegan"] = row["baseline"]["cpu_ms_per_img"] / row["vaegan"]["cpu_ms_per_img"]
            results["runs"].append(row)
            print(size, variant, f"vaegan {row['vaegan']['img_per_s']:.2f} img/s, baseline "
                  f"{row['baseline']['img_per_s']:.2f} img/s, ratio {row['ratio_vaegan_over_baseline']:.3f}", flush=True)
    for name in ("celeba-64", "celeba-64-progressive"):
        results["flops_per_image"][name] = train_flops_per_image(get_preset(name))
    results["load_average_end"] = load_average()
    return results


def markdown(results: dict) -> str:
    mm = results["matmul_gflops"]
    lines = [
        "# VAEGAN train_step throughput", "",
        f"Machine: {results['machine']['cpu_count']} CPU cores, {results['machine']['platform']}, TF "
        f"{results['machine']['tensorflow']}, Keras {results['machine']['keras']}; load average (1, 5, 15 min) "
        f"at start {results['load_average_start']}, at end {results.get('load_average_end')} (the machine is shared).",
        f"Matmul rate in the same run: float32 {mm['float32']:.1f} GFLOP/s, bfloat16 {mm['bfloat16']:.1f} GFLOP/s.", "",
        "| size | variant | batch | vaegan img/s (best) | baseline img/s (best) | ratio median (best) | "
        "CPU ms/img vaegan / baseline (ratio) | vaegan GFLOP/s | % of f32 matmul |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["runs"]:
        v, b = row["vaegan"], row["baseline"]
        lines.append(f"| {row['size']} | {row['variant']} | {row['batch']} | {v['img_per_s']:.2f} ({v['best_img_per_s']:.2f}) | "
                     f"{b['img_per_s']:.2f} ({b['best_img_per_s']:.2f}) | {row['ratio_vaegan_over_baseline']:.3f} "
                     f"({row['ratio_best']:.3f}) | {v['cpu_ms_per_img']:.1f} / {b['cpu_ms_per_img']:.1f} "
                     f"({row['cpu_ratio_baseline_over_vaegan']:.3f}) | {v['gflops']:.1f} | {100 * v['fraction_of_f32_matmul']:.0f}% |")
    by = {(r["size"], r["variant"]): r for r in results["runs"]}
    lines += ["", "Speed-up of the VAEGAN step over its float32 run (median img/s):", ""]
    for size in dict.fromkeys(r["size"] for r in results["runs"]):
        base = by[(size, "float32")]["vaegan"]["img_per_s"]
        parts = [f"{variant} {by[(size, variant)]['vaegan']['img_per_s'] / base:.2f}x"
                 for variant in ("mixed_bfloat16", "xla") if (size, variant) in by]
        lines.append(f"- {size}: " + ", ".join(parts))
    lines += ["", "Model FLOPs per image (forward from TF's graph profiler; train step = 3 x (encoder + decoder) "
              "+ 8 x discriminator):", ""]
    for name, f in results["flops_per_image"].items():
        lines.append(f"- {name}: train step {f['train_step'] / 1e9:.2f} GFLOP (forward: encoder "
                     f"{f['encoder_forward'] / 1e9:.3f}, decoder {f['decoder_forward'] / 1e9:.3f}, discriminator "
                     f"{f['discriminator_forward'] / 1e9:.3f})")
    if "celeba-64" in results["flops_per_image"] and "celeba-64-progressive" in results["flops_per_image"]:
        ratio = (results["flops_per_image"]["celeba-64"]["train_step"]
                 / results["flops_per_image"]["celeba-64-progressive"]["train_step"])
        lines.append(f"- celeba-64 / celeba-64-progressive: {ratio:.2f}x fewer FLOPs per image")
    lines += ["", "Ratios are vaegan over baseline for speed (higher is better for vaegan), baseline over vaegan "
              "for CPU time per image (same direction). "
              "Medians (and best) of interleaved repeats of both implementations; the GFLOP/s column uses "
              "the same model FLOPs for both (the VAEGAN step also runs the discriminator on real and fake "
              "images once more, a fraction of a percent at these sizes)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps per repeat")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    started = time.time()
    results = run(args)
    results["total_seconds"] = round(time.time() - started, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_vaegan.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "bench_vaegan.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
