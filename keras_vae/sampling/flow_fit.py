"""Fitting the ``flow`` sampler (``keras_vae.sampling.samplers.FlowSampler``) on the aggregate posterior, in TensorFlow.

The couplings start at the identity (zero last layers), so the flow starts as its ``base`` mixture (the
fitted ``gmm``; one Gaussian without it), and are trained by maximum likelihood on draws of the aggregate
posterior q(z) = 1/N sum_i N(mu_i, diag sigma_i^2): every batch draws fresh z = mu_i + sigma_i e (the
codes' own noise acts as data augmentation), whitened by the ``gaussian`` sampler's (m, L); the base
mixture's density is evaluated in those coordinates. Adam; every ``eval_every`` steps the flow scores the
held-out ``validation_codes`` (mean log-likelihood, float64, the score every sampler is chosen by) and the
best weights so far are kept (step 0, the base itself, included); training stops after ``patience``
evaluations without improvement. Seeded: the same codes and seed give the same flow on one machine.
"""
from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from keras_vae.errors import ConfigError, DataError
from keras_vae.sampling.samplers import (
    DEFAULT_CLAMP,
    Coupling,
    FlowSampler,
    LatentSampler,
    _check_codes,
    fit_gaussian,
    make_flow,
)

# Measured on the default VAEGAN's codes (benchmarks/results/flow_sampler.md): 8 couplings of 128 units at Adam
# 1e-4 reach the best held-out likelihood (-26.84 nats against the mixture's -27.38; 4 x 64 at 1e-3: -27.33,
# over-fitting after 200 steps).
FLOW_COUPLINGS = 8
FLOW_HIDDEN = 128
FLOW_BATCH = 256
FLOW_LEARNING_RATE = 1e-4
FLOW_EVAL_EVERY = 50
FLOW_PATIENCE = 12


def flow_fit_steps(steps: int, eval_every: int = FLOW_EVAL_EVERY) -> int:
    """Units of work ``fit_flow`` reports to its ``progress``: one per evaluation (early stops count the rest)."""
    return max(1, math.ceil(int(steps) / int(eval_every))) if steps > 0 else 0


def coupling_splits(d: int, couplings: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(cond, trans) index arrays: pairs of couplings share a random half split, swapped in the second,
    so every axis is transformed once per pair."""
    if d < 2:
        raise ConfigError(f"a flow sampler needs a latent size >= 2, got {d}")
    rng = np.random.default_rng(seed)
    splits = []
    for j in range(couplings):
        if j % 2 == 0:
            perm = rng.permutation(d)
            first, second = np.sort(perm[: d // 2]), np.sort(perm[d // 2:])
            splits.append((first, second))
        else:
            splits.append((second, first))
    return splits


def fit_flow(means: np.ndarray, variances: np.ndarray | None, validation_codes: np.ndarray, *,
             steps: int = 3000, couplings: int = FLOW_COUPLINGS, hidden: int = FLOW_HIDDEN,
             batch_size: int = FLOW_BATCH, learning_rate: float = FLOW_LEARNING_RATE,
             eval_every: int = FLOW_EVAL_EVERY, patience: int = FLOW_PATIENCE, clamp: float = DEFAULT_CLAMP,
             weight_decay: float = 0.0, base: LatentSampler | None = None, seed: int = 0, mode: str = "inference",
             progress: Callable[[int], None] | None = None) -> FlowSampler:
    """A RealNVP flow on the mixture ``base`` (None: one Gaussian, the codes' moments) fitted to the codes (see
    the module doc); ``progress(n)`` follows ``flow_fit_steps(steps)``."""
    import tensorflow as tf

    mu, var = _check_codes(means, variances)
    val = np.asarray(validation_codes, np.float64)
    if val.ndim != 2 or val.shape[1] != mu.shape[1] or len(val) < 1:
        raise DataError(f"validation codes must be [M, {mu.shape[1]}], got shape {val.shape}")
    for name, value in (("steps", steps), ("couplings", couplings), ("hidden", hidden), ("batch_size", batch_size),
                        ("eval_every", eval_every), ("patience", patience)):
        if int(value) < 1:
            raise ConfigError(f"flow {name} must be >= 1, got {value}")
    d = mu.shape[1]
    whitening = fit_gaussian(mu, var, mode=mode)
    m, tril = whitening.means[0], whitening.scale_tril[0]
    tril_inv = np.linalg.inv(tril)
    base = whitening if base is None else base
    if base.latent_dim != d:
        raise DataError(f"the base mixture has latent size {base.latent_dim}, the codes {d}")
    whitened = make_flow(base, m, tril, []).whitened_base
    base_consts = {"log_weights": tf.constant(np.log(np.maximum(whitened.weights, 1e-300)), tf.float32),
                   "means": tf.constant(whitened.means, tf.float32),
                   "inv_tril": tf.constant(np.linalg.inv(whitened.scale_tril), tf.float32),  # [K, d, d]
                   "log_det": tf.constant(np.sum(np.log(np.diagonal(whitened.scale_tril, axis1=1, axis2=2)), 1),
                                          tf.float32)}
    splits = coupling_splits(d, couplings, seed)
    rng = np.random.default_rng(seed)

    def glorot(fan_in: int, fan_out: int) -> np.ndarray:
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)

    variables = []  # per coupling: [W1, b1, W2, b2, W3, b3]
    for cond, trans in splits:
        widths = [len(cond), hidden, hidden, 2 * len(trans)]
        layer_vars = []
        for j in range(3):
            kernel = glorot(widths[j], widths[j + 1]) if j < 2 else np.zeros((widths[j], widths[j + 1]), np.float32)
            layer_vars += [tf.Variable(kernel), tf.Variable(np.zeros(widths[j + 1], np.float32))]
        variables.append(layer_vars)
    flat = [v for layer_vars in variables for v in layer_vars]
    inverse_orders = [tf.constant(np.argsort(np.concatenate([c, t])), tf.int32) for c, t in splits]
    consts = dict(mu=tf.constant(mu, tf.float32), sd=tf.constant(np.sqrt(var), tf.float32),
                  m=tf.constant(m, tf.float32), tril_inv_t=tf.constant(tril_inv.T, tf.float32))
    optimizer = (tf.keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay) if weight_decay > 0
                 else tf.keras.optimizers.Adam(learning_rate))
    generator = tf.random.Generator.from_seed(seed)
    c_value = float(clamp)

    def negative_log_likelihood(x):
        """Mean of -log p(x) + const over the whitened batch (couplings run backwards)."""
        total_s = tf.zeros(tf.shape(x)[:1])
        for (cond, trans), layer_vars, order in reversed(list(zip(splits, variables, inverse_orders))):
            a = tf.gather(x, cond, axis=1)
            h = tf.nn.relu(a @ layer_vars[0] + layer_vars[1])
            h = tf.nn.relu(h @ layer_vars[2] + layer_vars[3])
            out = h @ layer_vars[4] + layer_vars[5]
            r, t = out[:, :len(trans)], out[:, len(trans):]
            s = c_value * tf.tanh(r / c_value)
            b = (tf.gather(x, trans, axis=1) - t) * tf.exp(-s)
            x = tf.gather(tf.concat([a, b], axis=1), order, axis=1)
            total_s += tf.reduce_sum(s, axis=1)
        # -log base_w(x0): log-sum-exp over the whitened mixture's components (constants dropped)
        y = tf.einsum("kij,nkj->nki", base_consts["inv_tril"], x[:, None, :] - base_consts["means"][None])
        per_component = base_consts["log_weights"] - base_consts["log_det"] - 0.5 * tf.reduce_sum(y * y, axis=2)
        return tf.reduce_mean(total_s - tf.reduce_logsumexp(per_component, axis=1))

    n_codes = mu.shape[0]
    batch = min(int(batch_size), n_codes)

    @tf.function(autograph=False)  # Python loops over the couplings only: nothing for AutoGraph to convert
    def train_step():
        index = generator.uniform([batch], 0, n_codes, dtype=tf.int32)
        z = tf.gather(consts["mu"], index) + tf.gather(consts["sd"], index) * generator.normal([batch, d])
        x = (z - consts["m"]) @ consts["tril_inv_t"]
        with tf.GradientTape() as tape:
            loss = negative_log_likelihood(x)
        grads = tape.gradient(loss, flat)
        optimizer.apply_gradients(zip(grads, flat))
        return loss

    def snapshot() -> list[Coupling]:
        return [Coupling(cond, trans, tuple(v.numpy() for v in layer_vars[0::2]),
                         tuple(v.numpy() for v in layer_vars[1::2]))
                for (cond, trans), layer_vars in zip(splits, variables)]

    def score(current: list[Coupling]) -> float:
        flow = make_flow(base, m, tril, current, clamp)
        value = float(np.mean(flow.log_prob(val)))
        return value if math.isfinite(value) else -math.inf

    started = time.perf_counter()
    best_couplings = snapshot()
    best_score, best_step = score(best_couplings), 0
    history = {"0": best_score}
    units, done, waited = flow_fit_steps(steps, eval_every), 0, 0
    step = 0
    while step < steps:
        for _ in range(min(eval_every, steps - step)):
            train_step()
        step = min(step + eval_every, steps)
        current = snapshot()
        value = score(current)
        history[str(step)] = value
        done += 1
        if progress is not None:
            progress(1)
        if value > best_score:
            best_score, best_step, best_couplings, waited = value, step, current, 0
        else:
            waited += 1
            if waited >= patience:
                break
    if progress is not None and units > done:
        progress(units - done)
    selection = {"criterion": "mean log-likelihood of held-out codes (nats per code)",
                 "validation_examples": int(len(val)), "held_out_log_likelihood": best_score,
                 "best_step": best_step, "steps_run": step, "history": history,
                 "couplings": int(couplings), "hidden": int(hidden), "batch_size": batch,
                 "learning_rate": float(learning_rate), "clamp": float(clamp), "weight_decay": float(weight_decay),
                 "base": {"kind": base.kind, "components": base.num_components,
                          "held_out_log_likelihood": history["0"]},
                 "fit_seconds": round(time.perf_counter() - started, 1)}
    return make_flow(base, m, tril, best_couplings, clamp, fitted_on={"examples": int(n_codes), "mode": mode},
                     selection=selection)
