"""The VAEGAN ``train_step`` against plain two-tape training steps of the same networks and losses (float32).

    PYTHONPATH=. python -m benchmarks --suite step [--size quick|full] [--repeats 5]

Three steps, each a ``tf.function`` over one fixed batch, interleaved round after round:

- ``vaegan``: ``VAEGAN.train_step`` as ``fit`` runs it (alternating: D update on [x, sg(x_hat)],
  then the VAE update through the updated D with D's moving statistics frozen; logged metrics,
  the Monte Carlo KL diagnostic, per-replica seeds);
- ``plain-alternating``: the same math written plainly (one posterior sample, the same loss
  functions, D's update first, then the VAE's through the updated D), no metrics or diagnostics:
  what the alternation itself costs;
- ``plain-simultaneous``: the reference code's pattern, one forward pass, D called once on
  [x, x_hat], two tapes, both updates from the same D (a different algorithm: D's update does not
  reach the VAE's loss in the same step).

Each network gets its own copy of the weights (same seed: same initial weights). Reported: median
images/s and CPU ms per image, and the paired per-round ratios. quick: mnist-28; full adds celeba-64
(batch 16, 64x64x3). Never a test.
"""
from __future__ import annotations

from benchmarks.common import environment
from benchmarks.training_common import finish_environment, interleaved, paired_ratios, shared_machine_note

PRESETS = {"smoke": ("tiny",), "quick": ("mnist-28",), "full": ("mnist-28", "celeba-64")}
STEPS = {"tiny": 1, "mnist-28": 20, "celeba-64": 2}  # steps per variant per round
VARIANTS = ("vaegan", "plain-alternating", "plain-simultaneous")


def _plain_steps(model, sample_posterior: bool = True):
    """(alternating, simultaneous) plain train steps over ``model``'s networks and optimizers; each
    returns (VAE loss, D loss) of its step. ``sample_posterior=False`` decodes the posterior mean."""
    import tensorflow as tf

    from keras_vae import losses
    from keras_vae.distributions import population_kl, variance_regularizer
    from keras_vae.models.batchnorm import frozen_statistics

    lc = model.loss_config
    enc, dec, disc = model.encoder, model.decoder, model.discriminator
    g_opt, d_opt = model.g_optimizer, model.d_optimizer
    g_vars = enc.trainable_variables + dec.trainable_variables
    d_vars = disc.trainable_variables
    seed = tf.Variable([0, 0], dtype=tf.int32, trainable=False)

    def forward(x):
        seed.assign_add([0, 1])
        mean, log_var = enc(x, training=True)
        mean, log_var = tf.cast(mean, tf.float32), tf.cast(log_var, tf.float32)
        z = mean
        if sample_posterior:
            z = mean + tf.exp(0.5 * log_var) * tf.random.stateless_normal(tf.shape(mean), seed=seed)
        return mean, log_var, tf.cast(dec(z, training=True), tf.float32)

    def vae_loss(x, mean, log_var, x_hat, fake_logits):
        per_example = (lc.reconstruction_weight * losses.mean_absolute_error(x, x_hat)
                       + lc.kl_weight * population_kl(mean, log_var, lc.population_variance)
                       + lc.variance_weight * variance_regularizer(log_var)
                       + lc.adversarial_weight * losses.generator_loss(lc.adversarial_loss, fake_logits))
        return tf.reduce_mean(per_example)

    def d_loss(real_logits, fake_logits):
        return tf.reduce_mean(lc.adversarial_weight * losses.discriminator_loss(lc.adversarial_loss, real_logits,
                                                                                fake_logits))

    def split(logits, n):
        return logits[:n], logits[n:]

    @tf.function
    def alternating(x):
        n = tf.shape(x)[0]
        with tf.GradientTape() as g_tape:
            mean, log_var, x_hat = forward(x)
            with g_tape.stop_recording():
                with tf.GradientTape() as d_tape:
                    real, fake = split(disc(tf.concat([x, tf.stop_gradient(x_hat)], 0), training=True), n)
                    dl = d_loss(real, fake)
                d_opt.apply(d_tape.gradient(dl, d_vars), d_vars)
            with frozen_statistics(disc):
                _, fake = split(disc(tf.concat([x, x_hat], 0), training=True), n)
            gl = vae_loss(x, mean, log_var, x_hat, fake)
        g_opt.apply(g_tape.gradient(gl, g_vars), g_vars)
        return gl, dl

    @tf.function
    def simultaneous(x):
        n = tf.shape(x)[0]
        with tf.GradientTape() as g_tape, tf.GradientTape() as d_tape:
            mean, log_var, x_hat = forward(x)
            real, fake = split(disc(tf.concat([x, x_hat], 0), training=True), n)
            gl = vae_loss(x, mean, log_var, x_hat, fake)
            dl = d_loss(real, fake)
        g_opt.apply(g_tape.gradient(gl, g_vars), g_vars)
        d_opt.apply(d_tape.gradient(dl, d_vars), d_vars)
        return gl, dl

    return alternating, simultaneous


def graph_cost(fn, x) -> dict:
    """Deterministic cost of one traced step: model FLOPs per image from TF's graph profiler (the same
    counter for every variant) and the number of ops in the step's graph (each op is a kernel launch)."""
    import tensorflow as tf

    from benchmarks.flops import graph_flops

    spec = tf.TensorSpec(x.shape, x.dtype)
    graph = fn.get_concrete_function(spec).graph
    ops = len(graph.get_operations())
    for function in graph._functions.values():  # while-loop / cond bodies, if any
        ops += len(function.graph.get_operations()) if hasattr(function, "graph") else 0
    return {"gflop_per_img": graph_flops(fn, spec) / int(x.shape[0]) / 1e9, "graph_ops": ops}


def bench_preset(preset: str, repeats: int, log=print) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_vae.models import build_model
    from keras_vae.config.presets import get_preset

    config = get_preset(preset)
    batch, steps = config.train.batch_size, STEPS[preset]
    x = tf.random.stateless_uniform((batch,) + tuple(config.model.image_shape), seed=(1, 2), minval=-1.0, maxval=1.0)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float32")
    try:
        models = {}
        for name in VARIANTS:
            keras.utils.set_random_seed(0)
            models[name] = build_model(config)
            models[name].compile_for_training(config.train)
        ours = tf.function(models["vaegan"].train_step)
        alternating, _ = _plain_steps(models["plain-alternating"])
        _, simultaneous = _plain_steps(models["plain-simultaneous"])
        fns = {"vaegan": ours, "plain-alternating": alternating, "plain-simultaneous": simultaneous}

        def loop(fn):
            def go():
                for _ in range(steps):
                    out = fn(x)
                tf.nest.map_structure(np.asarray, out)
            return go

        graphs = {name: graph_cost(fn, x) for name, fn in fns.items()}
        calls = {name: loop(fn) for name, fn in fns.items()}
        for go in calls.values():  # trace and warm up
            go()
        timing = interleaved(calls, steps * batch, repeats, log, preset)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return {"preset": preset, "image_shape": list(config.model.image_shape), "batch": batch,
            "steps_per_round": steps, "variants": timing, "graph": graphs,
            "vaegan_vs_simultaneous": paired_ratios(timing["vaegan"], timing["plain-simultaneous"]),
            "vaegan_vs_alternating": paired_ratios(timing["vaegan"], timing["plain-alternating"]),
            "alternating_vs_simultaneous": paired_ratios(timing["plain-alternating"], timing["plain-simultaneous"])}


def run(size: str = "quick", repeats: int = 3, log=print, presets=None, **_) -> dict:
    import tensorflow as tf

    env = environment()
    result = {"suite": "step", "size": size, "repeats": repeats, "versions": {"tensorflow": tf.__version__},
              "precision": "float32", "presets": {}}
    for preset in presets or PRESETS[size]:
        result["presets"][preset] = bench_preset(preset, repeats, log)
    result["environment"] = finish_environment(env)
    return result


def to_markdown(result: dict) -> str:
    lines = ["# VAEGAN train_step vs plain two-tape steps, float32 (`python -m benchmarks --suite step`)", "",
             shared_machine_note(result["environment"]) + f" Medians of {result['repeats']} interleaved rounds; "
             "ratios are medians of per-round ratios (speed: vaegan / other; CPU: other / vaegan; below 1 = "
             "vaegan slower).", "",
             "| preset | batch | step | img/s | CPU ms/img | graph GFLOP/img | ops in graph |",
             "|---|---:|---|---:|---:|---:|---:|"]
    for preset, p in result["presets"].items():
        for name, v in p["variants"].items():
            g = p.get("graph", {}).get(name, {})
            lines.append(f"| {preset} | {p['batch']} | {name} | {v['img_per_s']:.1f} | {v['cpu_ms_per_img']:.2f} | "
                         f"{g.get('gflop_per_img', float('nan')):.4f} | {g.get('graph_ops', '')} |")
    if result.get("graph_only"):
        lines += ["", "Graph cost only (no timing; traced in a separate run):", "",
                  "| preset | step | graph GFLOP/img | ops in graph |", "|---|---|---:|---:|"]
        for preset, graphs in result["graph_only"].items():
            for name, g in graphs.items():
                lines.append(f"| {preset} | {name} | {g['gflop_per_img']:.4f} | {g['graph_ops']} |")
    lines += ["", "Graph GFLOP/img is TF's graph profiler on the traced step before Grappler prunes unused gradient "
              "ops (so the two-tape step counts gradients it never runs); equal counts mean the same work was "
              "written down. Ops in graph counts every op (constants included).", "",
              "| preset | comparison | speed ratio | CPU ratio |", "|---|---|---:|---:|"]
    for preset, p in result["presets"].items():
        for key, label in (("vaegan_vs_simultaneous", "vaegan vs plain-simultaneous (the issue's baseline)"),
                           ("vaegan_vs_alternating", "vaegan vs plain-alternating (same math)"),
                           ("alternating_vs_simultaneous", "plain-alternating vs plain-simultaneous")):
            lines.append(f"| {preset} | {label} | {p[key]['speed']:.3f} | {p[key]['cpu']:.3f} |")
    return "\n".join(lines) + "\n"


def summary_rows(result: dict) -> list[list[str]]:
    rows = []
    for preset, p in result.get("presets", {}).items():
        v = p["variants"]
        rows.append([f"VAEGAN step {preset}", "CPU ms/img: train_step vs plain two-tape (simultaneous), float32",
                     f"{v['vaegan']['cpu_ms_per_img']:.2f}", f"{v['plain-simultaneous']['cpu_ms_per_img']:.2f}",
                     f"{p['vaegan_vs_simultaneous']['cpu']:.3f}x"])
        rows.append([f"VAEGAN step {preset}", "CPU ms/img: train_step vs plain code of the same alternating math",
                     f"{v['vaegan']['cpu_ms_per_img']:.2f}", f"{v['plain-alternating']['cpu_ms_per_img']:.2f}",
                     f"{p['vaegan_vs_alternating']['cpu']:.3f}x"])
    return rows
