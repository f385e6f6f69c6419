"""``VAEGAN.train_step`` side by side with the reference implementation's training step (celeba-64).

    PYTHONPATH=. python -m benchmarks.reference_step [--rounds 3] [--steps 4] [--warmup 2]
        [--precisions float32 mixed_bfloat16] [--out benchmarks/results]

The reference (Rivera, "How to Train Your VAE", ICIP 2024; the authors' Keras code) is re-implemented
here from its description (/work/shared/PAPER.md and its ``reader.py``/``discriminator.py`` layout),
configured like the celeba-64 preset (64x64x3, 128 filters, 4 down-samplings, latent 128, batch 16):

- encoder: LayerNormalization over (H, W), 3x3 conv, per stage two ResNetV2 identity blocks
  (BN-ReLU-Conv3x3, BN-ReLU-Conv3x3, BN-ReLU-Conv1x1, + x) and one down-sampling block (the same with
  stride 2 in the 1x1 conv, + BN-ReLU-Conv1x1/2 shortcut); 1x1 conv to latent/8 channels, flatten,
  Dense heads for mu and log sigma^2; z = mu + exp(log_var / 2) * eps;
- decoder: Dense, reshape to the encoder's last feature shape, 3x3 conv, per stage one identity block
  and one up-sampling block (BN-ReLU-Conv1x1, BN-ReLU-Conv2DTranspose3x3/2, + BN-ReLU-Conv2DTranspose
  shortcut), the last one ending in the image's 3 channels (the reference's decoder filter list ends in
  the channel count), 1x1 conv to 3 channels (linear); every conv with a bias (Keras' default);
- PatchGAN: Conv2D [128, 128, 128, 64, 64, 1], kernel 3, strides [2, 2, 2, 1, 1, 1], each followed by
  BatchNorm, LeakyReLU (slope 0.3, not after the last) and Dropout 0.25;
- the step: one forward pass, D called on x and on x_hat, two GradientTapes (VAE and D), both
  updates from the same forward pass; VAE loss = 5000 MAE + population KL (mean and variance of the
  batch means) + 0.1 variance regularizer + 100 BCE(1, D(x_hat)); D loss = 100 [BCE(1, D(x)) +
  BCE(0, D(x_hat))]; Adam(1e-4, beta_1 0.5) for each.

Arms, each a compiled ``tf.function`` over one fixed batch, run in interleaved rounds in one process:

- ``keras-vae``: ``VAEGAN.train_step`` of the celeba-64 preset, as ``fit`` compiles it;
- ``reference``: the reference as written: its networks are called without ``training=``, so under
  Keras 3 BatchNorm runs on its moving statistics and dropout never fires;
- ``reference-train``: the same with ``training=True`` (batch statistics, dropout on), the mode
  keras-vae trains in;
- ``keras-vae-keras-bn``: ``VAEGAN.train_step`` with every BatchNorm running Keras' own training-mode
  code instead of the fused kernel (``FusedBatchNormalization``): keras-vae before that change.

The reference as written draws its epsilon in float32, which fails under mixed_bfloat16; here it is
drawn in the means' dtype (the only change). mixed_bfloat16 runs only where the CPU has native bf16
(``keras_vae.training.precision``). Reported: median images/s and CPU ms per image (process CPU time,
all threads) and the paired per-round ratios. Writes reference_step.json and reference_step.md.
Never a test.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks.common import RESULTS, environment, write_result  # noqa: E402
from benchmarks.training_common import finish_environment, interleaved, paired_ratios, shared_machine_note  # noqa: E402

PRESET = "celeba-64"
R_LOSS_FACTOR, VARIANCE_WEIGHT, ADVERSARIAL_WEIGHT = 5000.0, 0.1, 100.0


# --- the reference networks ---------------------------------------------------------------------

def repeated(fn, x, n: int):
    """A callable running ``fn(x)`` n times, then bringing the last output to NumPy (the work is done)."""
    def go():
        import tensorflow as tf

        for _ in range(n):
            out = fn(x)
        tf.nest.map_structure(np.asarray, out)
    return go


def _br(x, name, training):
    import keras
    return keras.layers.Activation("relu")(keras.layers.BatchNormalization(name=name)(x, training=training))


def reference_networks(image_shape=(64, 64, 3), latent_dim=128, filters=128, stages=4,
                       disc_filters=(128, 128, 128, 64, 64, 1), disc_strides=(2, 2, 2, 1, 1, 1)):
    """(encoder, decoder, discriminator) of the reference layout: encoder x -> (mean, log_var), decoder
    z -> linear image, discriminator image -> logit map. Built as layer graphs whose BatchNorm/Dropout
    follow the ``training`` flag of the call."""
    import keras
    from keras import layers

    def tri(x, f, last_stride, transpose=False):
        y = layers.BatchNormalization()(x)
        y = layers.Activation("relu")(y)
        if transpose:  # up-sampling block: 1x1 then 3x3 transposed /2
            y = layers.Conv2D(f, 1, padding="same")(y)
            y = layers.Activation("relu")(layers.BatchNormalization()(y))
            return layers.Conv2DTranspose(f, 3, strides=2, padding="same")(y)
        y = layers.Conv2D(f, 3, padding="same")(y)
        y = layers.Activation("relu")(layers.BatchNormalization()(y))
        y = layers.Conv2D(f, 3, padding="same")(y)
        y = layers.Activation("relu")(layers.BatchNormalization()(y))
        return layers.Conv2D(f, 1, strides=last_stride, padding="same")(y)

    def identity(x, f):
        return layers.Add()([tri(x, f, 1), x])

    def down(x, f):
        short = layers.Conv2D(f, 1, strides=2, padding="same")(layers.Activation("relu")(layers.BatchNormalization()(x)))
        return layers.Add()([tri(x, f, 2), short])

    def up(x, f):
        short = layers.Conv2DTranspose(f, 3, strides=2, padding="same")(
            layers.Activation("relu")(layers.BatchNormalization()(x)))
        return layers.Add()([tri(x, f, 2, transpose=True), short])

    images = keras.Input(image_shape)
    x = layers.LayerNormalization(axis=(1, 2))(images)
    x = layers.Conv2D(filters, 3, padding="same")(x)
    for _ in range(stages):
        x = identity(x, filters)
        x = identity(x, filters)
        x = down(x, filters)
    features = layers.Conv2D(latent_dim // 8, 1, padding="same")(x)
    start_shape = tuple(features.shape[1:])
    flat = layers.Flatten()(features)
    encoder = keras.Model(images, [layers.Dense(latent_dim, name="z_mean")(flat),
                                   layers.Dense(latent_dim, name="z_log_var")(flat)], name="ref_encoder")

    z = keras.Input((latent_dim,))
    y = layers.Reshape(start_shape)(layers.Dense(int(np.prod(start_shape)))(z))
    y = layers.Conv2D(filters, 3, padding="same")(y)
    for stage in range(stages):
        y = identity(y, filters)
        y = up(y, image_shape[-1] if stage == stages - 1 else filters)  # the last block ends in image channels
    decoder = keras.Model(z, layers.Conv2D(image_shape[-1], 1, padding="same", dtype="float32")(y),
                          name="ref_decoder")

    d_in = keras.Input(image_shape)
    d = d_in
    for i, (f, s) in enumerate(zip(disc_filters, disc_strides)):
        d = layers.Conv2D(f, 3, strides=s, padding="same")(d)
        d = layers.BatchNormalization(dtype="float32" if i == len(disc_filters) - 1 else None)(d)
        if i < len(disc_filters) - 1:
            d = layers.LeakyReLU()(d)
        d = layers.Dropout(0.25)(d)
    discriminator = keras.Model(d_in, layers.Activation("linear", dtype="float32")(d), name="ref_discriminator")
    return encoder, decoder, discriminator


def reference_step(encoder, decoder, discriminator, training=None):
    """The reference's two-tape step as a tf.function of x; ``training`` None calls the networks
    without the flag (the reference as written), True in training mode. Returns (VAE loss, D loss)."""
    import keras
    import tensorflow as tf

    g_opt = keras.optimizers.Adam(1e-4, beta_1=0.5)
    d_opt = keras.optimizers.Adam(1e-4, beta_1=0.5)
    g_vars = encoder.trainable_variables + decoder.trainable_variables
    d_vars = discriminator.trainable_variables
    g_opt.build(g_vars)
    d_opt.build(d_vars)
    kwargs = {} if training is None else {"training": training}

    def bce(labels_one: bool, logits):
        logits = tf.cast(logits, tf.float32)
        labels = tf.ones_like(logits) if labels_one else tf.zeros_like(logits)
        return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))

    @tf.function
    def step(x):
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            mean, log_var = encoder(x, **kwargs)
            eps = tf.random.normal(tf.shape(mean), dtype=mean.dtype)
            z = mean + tf.exp(0.5 * log_var) * eps
            x_hat = decoder(z, **kwargs)
            real_logits = discriminator(x, **kwargs)
            fake_logits = discriminator(x_hat, **kwargs)
            mean32, log_var32 = tf.cast(mean, tf.float32), tf.cast(log_var, tf.float32)
            r_loss = R_LOSS_FACTOR * tf.reduce_mean(tf.abs(x - tf.cast(x_hat, tf.float32)))
            m, s2 = tf.nn.moments(mean32, axes=[0])
            kl = 0.5 * tf.reduce_sum(tf.square(m) + s2 - 1.0 - tf.math.log(s2 + 1e-8))
            var_reg = VARIANCE_WEIGHT * tf.reduce_mean(tf.reduce_sum(tf.exp(log_var32) - 1.0 - log_var32, axis=-1))
            g_adv = ADVERSARIAL_WEIGHT * bce(True, fake_logits)
            g_loss = r_loss + kl + var_reg + g_adv
            d_loss = ADVERSARIAL_WEIGHT * (bce(True, real_logits) + bce(False, fake_logits))
        g_opt.apply(g_tape.gradient(g_loss, g_vars), g_vars)
        d_opt.apply(d_tape.gradient(d_loss, d_vars), d_vars)
        return g_loss, d_loss

    return step


def unfuse(model) -> int:
    """Make every BatchNorm of ``model`` run Keras' own call (the unfused training-mode ops); returns how many."""
    import types

    import keras

    from keras_vae.models.batchnorm import batch_norm_layers

    layers = batch_norm_layers(*model.batch_norm_networks())
    for layer in layers:
        layer.call = types.MethodType(keras.layers.BatchNormalization.call, layer)
    return len(layers)


def count_params(*networks) -> int:
    return int(sum(np.prod(v.shape) for n in networks for v in n.trainable_variables))


# --- the benchmark ------------------------------------------------------------------------------------
def build_arms(precision: str, extra_arms=None):
    """name -> compiled step over one batch, and the batch; built under ``precision``'s global policy."""
    import keras
    import tensorflow as tf

    from keras_vae.config.presets import get_preset
    from keras_vae.models import build_model

    config = get_preset(PRESET)
    keras.mixed_precision.set_global_policy(precision)
    batch = config.train.batch_size
    x = tf.random.stateless_uniform((batch,) + tuple(config.model.image_shape), seed=(1, 2), minval=-1.0, maxval=1.0)
    keras.utils.set_random_seed(0)
    model = build_model(config)
    model.compile_for_training(config.train)
    arms = {"keras-vae": tf.function(model.train_step)}
    params = {"keras-vae": count_params(model.encoder, model.decoder, model.discriminator)}
    keras.utils.set_random_seed(0)
    before = build_model(config)
    before.compile_for_training(config.train)
    unfuse(before)
    arms["keras-vae-keras-bn"] = tf.function(before.train_step)
    params["keras-vae-keras-bn"] = params["keras-vae"]
    for name, training in (("reference", None), ("reference-train", True)):
        keras.utils.set_random_seed(0)
        nets = reference_networks(tuple(config.model.image_shape), config.model.latent_dim, 128, config.model.num_stages)
        arms[name] = reference_step(*nets, training=training)
        params[name] = count_params(*nets)
    for name, factory in (extra_arms or {}).items():
        arms[name] = factory(config)
    return arms, x, batch, params


def bench_precision(precision: str, rounds: int, steps: int, warmup: int, log=print, extra_arms=None) -> dict:
    import keras
    import tensorflow as tf

    previous = keras.mixed_precision.global_policy()
    try:
        arms, x, batch, params = build_arms(precision, extra_arms)

        gflops = {}
        if precision == "float32":  # TF's graph profiler on each traced step (model FLOPs, same counter)
            from benchmarks.flops import graph_flops
            spec = tf.TensorSpec(x.shape, x.dtype)
            gflops = {name: graph_flops(fn, spec) / batch / 1e9 for name, fn in arms.items()}
        for name, fn in arms.items():  # trace + warm up
            log(f"[{precision}] warm-up {name}")
            repeated(fn, x, warmup)()
        timing = interleaved({k: repeated(fn, x, steps) for k, fn in arms.items()}, steps * batch, rounds, log, precision)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    ours = timing["keras-vae"]
    ratios = {f"keras-vae_vs_{k}": paired_ratios(ours, v) for k, v in timing.items() if k != "keras-vae"}
    return {"batch": batch, "steps_per_round": steps, "warmup_steps": warmup, "params": params,
            "graph_gflop_per_img": gflops, "arms": timing, "ratios": ratios}


def cpu_has_bf16() -> bool:
    from keras_vae.training.precision import CPU_BF16_FLAGS, cpu_flags
    return bool(cpu_flags() & set(CPU_BF16_FLAGS))


def run(rounds: int = 3, steps: int = 4, warmup: int = 2, precisions=("float32", "mixed_bfloat16"), log=print,
        extra_arms=None) -> dict:
    import tensorflow as tf

    env = environment()
    result = {"suite": "reference_step", "preset": PRESET, "rounds": rounds, "steps": steps, "warmup": warmup,
              "versions": {"tensorflow": tf.__version__}, "precisions": {}, "skipped": {}}
    for precision in precisions:
        if precision == "mixed_bfloat16" and not cpu_has_bf16():
            result["skipped"][precision] = "CPU without avx512_bf16/amx_bf16 (bf16 would be emulated)"
            continue
        result["precisions"][precision] = bench_precision(precision, rounds, steps, warmup, log, extra_arms)
    result["environment"] = finish_environment(env)
    return result


def to_markdown(result: dict) -> str:
    lines = [f"# VAEGAN train_step vs the reference implementation's step ({result['preset']})", "",
             "`PYTHONPATH=. python -m benchmarks.reference_step`; the reference is re-implemented in "
             "benchmarks/reference_step.py (see its docstring). " + shared_machine_note(result["environment"]),
             "", f"{result['warmup']} warm-up steps, then {result['rounds']} interleaved rounds of "
             f"{result['steps']} steps per arm; medians over rounds. Ratios are medians of per-round ratios "
             "(speed: keras-vae / other; CPU: other / keras-vae; above 1 = keras-vae cheaper). Trainable "
             "parameters include the discriminator's; graph GFLOP/img is TF's graph profiler on each traced "
             "float32 step (before Grappler prunes unused gradient ops).", "",
             "| precision | arm | trainable params | graph GFLOP/img | img/s | CPU ms/img |",
             "|---|---|---:|---:|---:|---:|"]
    for precision, p in result["precisions"].items():
        for name, v in p["arms"].items():
            g = p.get("graph_gflop_per_img", {}).get(name)
            lines.append(f"| {precision} | {name} | {p['params'].get(name, ''):,} | "
                         f"{'' if g is None else f'{g:.2f}'} | {v['img_per_s']:.2f} | {v['cpu_ms_per_img']:.0f} |")
    lines += ["", "| precision | comparison | speed ratio | CPU ratio |", "|---|---|---:|---:|"]
    for precision, p in result["precisions"].items():
        for key, r in p["ratios"].items():
            lines.append(f"| {precision} | {key.replace('_vs_', ' vs ')} | {r['speed']:.3f} | {r['cpu']:.3f} |")
    for precision, why in result.get("skipped", {}).items():
        lines.append(f"\n{precision} skipped: {why}.")
    return "\n".join(lines) + "\n"


# --- where the time of VAEGAN.train_step goes ----------------------------------------------------------
def breakdown(precision: str = "float32", rounds: int = 3, steps: int = 2, warmup: int = 1, log=print) -> dict:
    """CPU ms per image of parts of ``VAEGAN.train_step`` (celeba-64), interleaved in one process:
    the full step; the same step with Keras' unfused BatchNorm, without dropout, without the Monte Carlo
    mixture KL diagnostic; the VAE's half (``vae_step``: forward, D in the loss, VAE update), the
    discriminator's half (``discriminator_step``: forward, D update), the encoder + decoder forward
    pass alone, and the diagnostic alone."""
    import keras
    import tensorflow as tf

    from keras_vae.config.presets import get_preset
    from keras_vae.distributions import mixture_kl_monte_carlo
    from keras_vae.models import build_model
    from keras_vae.models import vaegan as vaegan_module

    config = get_preset(PRESET)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        batch = config.train.batch_size
        x = tf.random.stateless_uniform((batch,) + tuple(config.model.image_shape), seed=(1, 2), minval=-1.0,
                                        maxval=1.0)

        def model_of(**changes):
            keras.utils.set_random_seed(0)
            model = build_model(dataclasses.replace(config, model=dataclasses.replace(config.model, **changes)))
            model.compile_for_training(config.train)
            return model

        full, keras_bn, no_dropout, no_mc = model_of(), model_of(), model_of(disc_dropout=0.0), model_of()
        unfuse(keras_bn)
        original = vaegan_module.mixture_kl_monte_carlo
        vaegan_module.mixture_kl_monte_carlo = lambda mean, *a, **k: tf.zeros([], tf.float32)
        try:
            no_mc_step = tf.function(no_mc.train_step)
            no_mc_step.get_concrete_function(tf.TensorSpec(x.shape, x.dtype))  # traced without the diagnostic
        finally:
            vaegan_module.mixture_kl_monte_carlo = original
        mean, log_var = full.encode(x, training=True)
        arms = {
            "train_step": tf.function(full.train_step),
            "train_step, Keras BatchNorm": tf.function(keras_bn.train_step),
            "train_step, no dropout": tf.function(no_dropout.train_step),
            "train_step, no Monte Carlo KL": no_mc_step,
            "vae_step (forward + D in loss + VAE update)": tf.function(full.vae_step),
            "discriminator_step (forward + D update)": tf.function(full.discriminator_step),
            "encoder + decoder forward": tf.function(lambda t: full.decoder(full.encode(t, training=True)[0],
                                                                            training=True)),
            "Monte Carlo mixture KL alone": tf.function(
                lambda t: mixture_kl_monte_carlo(mean, log_var, config.loss.kl_monte_carlo_samples, seed=[1, 2])),
        }

        for name, fn in arms.items():
            log(f"[breakdown {precision}] warm-up {name}")
            repeated(fn, x, warmup)()
        timing = interleaved({k: repeated(fn, x, steps) for k, fn in arms.items()}, steps * batch, rounds, log,
                             f"breakdown {precision}")
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return {"precision": precision, "batch": batch, "steps_per_round": steps, "rounds": rounds,
            "parts": {k: {"cpu_ms_per_img": v["cpu_ms_per_img"], "rounds": v["rounds"]} for k, v in timing.items()}}


def breakdown_markdown(result: dict) -> str:
    lines = [f"## Where the time of VAEGAN.train_step goes ({result['precision']}, {PRESET}, batch {result['batch']})",
             "", f"{result['rounds']} interleaved rounds of {result['steps_per_round']} calls; medians of process "
             "CPU ms per image. The train_step rows are whole steps with one thing changed.", "",
             "| part | CPU ms/img |", "|---|---:|"]
    for name, v in result["parts"].items():
        lines.append(f"| {name} | {v['cpu_ms_per_img']:.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["float32", "mixed_bfloat16"])
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--breakdown", action="store_true",
                        help="time parts of VAEGAN.train_step instead (writes reference_step_breakdown.{json,md})")
    args = parser.parse_args(argv)
    from pathlib import Path
    if args.breakdown:
        parts = {p: breakdown(p, args.rounds, args.steps, args.warmup, log=lambda m: print(m, flush=True))
                 for p in args.precisions if p != "mixed_bfloat16" or cpu_has_bf16()}
        result = {"suite": "reference_step_breakdown", "parts": parts, "environment": finish_environment(environment())}
        _, md = write_result("reference_step_breakdown", result,
                             "\n".join(breakdown_markdown(p) for p in parts.values()), Path(args.out))
        print(md.read_text())
        return 0
    result = run(args.rounds, args.steps, args.warmup, tuple(args.precisions), log=lambda m: print(m, flush=True))
    result["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    result["command"] = "python -m benchmarks.reference_step " + " ".join(argv if argv is not None else sys.argv[1:])
    _, md = write_result("reference_step", result, to_markdown(result), Path(args.out))
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
