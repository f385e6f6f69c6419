"""The second stage of a two-stage VAE (Dai & Wipf, ICLR 2019) on a finished run's codes, for comparison
with the flow and mixture samplers (benchmarks/flow_sampler.py).

    python benchmarks/two_stage_vae.py RUN_DIR [--steps 6000] [--hidden 256] [--samples 1000] [--draws 5]

A VAE on the codes: encoder MLP z -> (mu_u, log var_u) of u in R^d, decoder MLP u -> mean of z with one learned
scale gamma (p(z|u) = N(dec(u), gamma^2 I)), trained by the ELBO on fresh draws z = mu_i + sigma_i e of the
training codes (Adam). Samples: z = dec(u), u ~ N(0, I) (the paper's sampler). Held-out score: the
importance-weighted bound (K = 1000) on the held-out codes' log-likelihood, a lower bound, comparable to the
samplers' exact held-out log-likelihoods. FD protocol: as flow_sampler.py. Prints JSON lines.
"""
from __future__ import annotations

import argparse
import json
import math

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    from keras_vae.data import make_datasets
    from keras_vae.evaluation.features import feature_net_for_run
    from keras_vae.evaluation.report import evaluation_data, sample_quality
    from keras_vae.runs.folder import load_run
    from keras_vae.sampling.posterior import encode_batches, held_out_codes
    from keras_vae.training.after_fit import ENCODE_BATCH, FIT_EXAMPLES, _limited, _rebatched

    config, model = load_run(args.run)
    data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                         batch_size=config.train.batch_size, seed=config.train.seed)
    val, _ = data.validation_arrays()
    mu, var = encode_batches(model, _rebatched(_limited(data.train, FIT_EXAMPLES), ENCODE_BATCH))
    held = held_out_codes(model, val, seed=config.train.seed).astype(np.float32)
    d = mu.shape[1]
    keras.utils.set_random_seed(args.seed)

    def mlp(out: int, name: str):
        return keras.Sequential([keras.layers.Dense(args.hidden, activation="relu"),
                                 keras.layers.Dense(args.hidden, activation="relu"), keras.layers.Dense(out)],
                                name=name)

    encoder, decoder = mlp(2 * d, "encoder"), mlp(d, "decoder")
    log_gamma = tf.Variable(0.0)
    encoder.build((None, d))
    decoder.build((None, d))
    variables = [*encoder.trainable_variables, *decoder.trainable_variables, log_gamma]
    optimizer = keras.optimizers.Adam(1e-3)
    codes_mu, codes_sd = tf.constant(mu, tf.float32), tf.constant(np.sqrt(var), tf.float32)
    generator = tf.random.Generator.from_seed(args.seed)

    def elbo(z):
        stats = encoder(z)
        m, log_v = stats[:, :d], stats[:, d:]
        u = m + tf.exp(0.5 * log_v) * generator.normal(tf.shape(m))
        recon = decoder(u)
        nll = 0.5 * tf.reduce_sum((z - recon) ** 2, 1) / tf.exp(2 * log_gamma) + d * log_gamma
        kl = 0.5 * tf.reduce_sum(m**2 + tf.exp(log_v) - 1 - log_v, 1)
        return -(nll + kl) - 0.5 * d * math.log(2 * math.pi)

    @tf.function
    def step():
        index = generator.uniform([256], 0, len(mu), dtype=tf.int32)
        z = tf.gather(codes_mu, index) + tf.gather(codes_sd, index) * generator.normal([256, d])
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(elbo(z))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    def iwae(z, k=1000):
        """log (1/K sum_k p(z, u_k) / q(u_k | z)) per code, in float64."""
        stats = encoder(z).numpy().astype(np.float64)
        m, sd = stats[:, :d], np.exp(0.5 * stats[:, d:])
        rng = np.random.default_rng(1)
        out = []
        for i in range(len(z)):
            u = m[i] + sd[i] * rng.standard_normal((k, d))
            recon = decoder(u.astype(np.float32)).numpy().astype(np.float64)
            g = float(log_gamma.numpy())
            log_p = (-0.5 * np.sum((z[i] - recon) ** 2, 1) / math.exp(2 * g) - d * g - 0.5 * np.sum(u**2, 1)
                     - d * math.log(2 * math.pi))
            log_q = (-0.5 * np.sum(((u - m[i]) / sd[i]) ** 2, 1) - np.sum(np.log(sd[i]))
                     - 0.5 * d * math.log(2 * math.pi))
            w = log_p - log_q
            out.append(np.max(w) + np.log(np.mean(np.exp(w - np.max(w)))))
        return np.asarray(out)

    history = {}
    for s in range(1, args.steps + 1):
        loss = step()
        if s % 1000 == 0:
            history[s] = {"train_loss": float(loss), "held_out_elbo": float(np.mean(elbo(held).numpy())),
                          "gamma": float(np.exp(log_gamma.numpy()))}
            print(json.dumps({"step": s, **history[s]}), flush=True)
    held_ll = float(np.mean(iwae(held)))
    cfg = evaluation_data(config)
    feature, _ = feature_net_for_run(config, args.run, train_if_missing=True)
    sets = []
    for i in range(args.draws):
        u = np.random.default_rng(args.seed + i).standard_normal((args.samples, d)).astype(np.float32)
        z = decoder(u).numpy()
        sets.append(np.concatenate([np.asarray(model.to_unit(model.decode(z[j:j + 500])))
                                    for j in range(0, len(z), 500)]))
    q = sample_quality(feature, cfg.real_unit, sets, seed=args.seed)
    print(json.dumps({"run": args.run, "sampler": "two-stage VAE (second stage)", "hidden": args.hidden,
                      "steps": args.steps, "held_out_iwae_1000": held_ll, "fd": q["frechet_distance"]["value"],
                      "fd_std": q["frechet_distance_std"]["value"], "precision": q["precision"]["value"],
                      "recall": q["recall"]["value"], "mean_intensity": float(np.mean([x.mean() for x in sets])),
                      "gamma": float(np.exp(log_gamma.numpy()))}), flush=True)


if __name__ == "__main__":
    main()
