"""Where does a run's sample Frechet distance come from: the decoder or the latent sampler?

    python benchmarks/diagnose_vaegan_samples.py [--quick] RUN_DIR [RUN_DIR ...]
    python benchmarks/diagnose_vaegan_samples.py --intensity RUN_DIR [RUN_DIR ...]
    python benchmarks/diagnose_vaegan_samples.py --scales RUN_DIR [RUN_DIR ...]
    python benchmarks/diagnose_vaegan_samples.py --refit RUN_COPY [RUN_COPY ...]
    python benchmarks/diagnose_vaegan_samples.py --reencode RUN_DIR [RUN_DIR ...]

For each run, FD / precision / recall (in-house MNIST features, against the validation digits) of:
reconstructions of the validation digits (decoder quality on codes the encoder makes), decodes of
training codes (the aggregate posterior's support, no sampler error), the stored samplers, Gaussian
mixtures with more components, and a kernel density of the training codes. The floor is real
training digits against the validation digits (same n).

``--intensity``: are the samples darker than the digits, and where does it start? For real validation
and training digits, reconstructions, decoded training codes and 1000 latents of every stored sampler
(seed 0): mean pixel intensity on [0, 1], the fraction of pixels > 0.5 (stroke area), the median of
pixels > 0.05 (stroke brightness), and for decoded images the fraction of the decoder's linear output
that the [-1, 1] clip cuts (below -1: background, above 1: saturated strokes). Then, for N(0, I)
latents, the samples' intensity by how likely their latent is under the fitted mixture (quartiles of
log q(z)): low-density latents decode to faint strokes.

``--scales``: the run's stored mixture (``samplers/gmm.json``) at covariance scales 1, 1.1, ..., 1.4 relative to
its fit (whatever scale training chose), each scored as the end-of-training evaluation scores ``sampler.json``:
the mean and spread over 5 draws of 1000 samples (seeds 0-4) against the validation digits; two runs compared
at equal scales separate their weights from their scale choice.

``--refit`` (on a copy: it rewrites sampler.json and samplers/): fits the run's samplers again as
``keras_vae.training.after_fit.finish_training`` now does at the end of training (mixture search, then the
covariance scale chosen on held-out training images), without touching the weights (BatchNorm statistics
as stored), and prints the selection. The codes come in another shuffle order than at the end of training,
so the mixture is an equivalent fit, not the identical one.

``--reencode``: the run's own samples (``sampler.json``, 5 draws of 1000, seeds 0-4, scored as the end-of-training
evaluation scores them) after 0, 1, 2 and 3 passes of x -> decode(posterior mean of x): does the encoder-decoder
pull samples decoded off the codes back onto the digits (the Markov chain of Rezende et al. 2014, with means)?
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def _codes(config, model, data):
    """(training images in the model's range, their posterior means and variances, the validation images'
    posterior means)."""
    from keras_vae.data import make_datasets
    from keras_vae.sampling.posterior import encode_batches

    ds = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                       batch_size=500, seed=0)
    train = np.concatenate([np.asarray(b[0] if isinstance(b, tuple) else b) for b in ds.train])
    mu_tr, var_tr = encode_batches(model, (train[i:i + 500] for i in range(0, len(train), 500)))
    mu_va, _ = encode_batches(model, (data.model_images[i:i + 500] for i in range(0, len(data.model_images), 500)))
    return train, mu_tr, var_tr, mu_va


def main(run_dirs: list[str], n: int = 1000, seed: int = 0, extra: bool = True) -> None:
    from keras_vae.evaluation.features import feature_net_for_run
    from keras_vae.evaluation.report import evaluation_data
    from keras_vae.evaluation.sample_quality import frechet_distance, precision_recall
    from keras_vae.sampling.posterior import load_sampler
    from keras_vae.runs.folder import load_run
    from keras_vae.sampling.samplers import fit_gmm

    for run_dir in run_dirs:
        config, model = load_run(run_dir)
        data = evaluation_data(config)
        feature, _ = feature_net_for_run(config, run_dir, train_if_missing=True)
        from keras_vae.evaluation.features import embed
        real = embed(feature, data.real_unit)
        train, mu_tr, var_tr, mu_va = _codes(config, model, data)

        def dec(z):
            z = np.asarray(z, np.float32)
            return np.concatenate([np.asarray(model.to_unit(model.decode(z[i:i + 500]))) for i in range(0, len(z), 500)])

        def score(name, images):
            f = embed(feature, images)
            p, r = precision_recall(real, f)
            print(json.dumps({"run": run_dir, "what": name, "n": len(images), "fd": round(frechet_distance(f, real), 2),
                              "precision": round(p, 3), "recall": round(r, 3),
                              "mean_intensity": round(float(images.mean()), 4)}), flush=True)

        train_unit = (train[:n] - config.model.value_range[0]) / (config.model.value_range[1] - config.model.value_range[0])
        score("real training digits (floor)", train_unit)
        score("reconstructions of validation (mu)", dec(mu_va))
        score("decoded training codes (mu)", dec(mu_tr[:n]))
        rng = np.random.default_rng(seed)
        z = mu_tr[:n] + np.sqrt(var_tr[:n]) * rng.standard_normal(mu_tr[:n].shape)
        score("decoded training codes (mu + sigma eps)", dec(z))
        for kind in ("gaussian", "gmm"):
            s = load_sampler(run_dir, model.latent_dim, kind)
            score(f"stored {kind} (K={s.num_components})", dec(s.sample(n, seed)))
        for k in ((32, 64, 128) if extra else ()):
            s = fit_gmm(mu_tr, var_tr, mu_va, components=(k,), seed=seed)
            score(f"gmm K={k} (held-out ll {s.selection['components'][str(k)]:.2f})", dec(s.sample(n, seed)))
        spread = mu_tr.std(0)
        for h in ((0.1, 0.2, 0.3) if extra else ()):
            idx = rng.integers(0, len(mu_tr), n)
            z = mu_tr[idx] + h * spread * rng.standard_normal((n, mu_tr.shape[1]))
            score(f"kde of training codes h={h} x std", dec(z))


def intensity(run_dirs: list[str], n: int = 1000, seed: int = 0) -> None:
    from keras_vae.evaluation.report import evaluation_data
    from keras_vae.runs.folder import load_run
    from keras_vae.sampling.posterior import SAMPLERS_DIR, load_sampler

    for run_dir in run_dirs:
        config, model = load_run(run_dir)
        data = evaluation_data(config)
        low, high = config.model.value_range
        train, mu_tr, _, mu_va = _codes(config, model, data)

        def decoded(z):
            """(images on [0, 1], the decoder's output before the clip) for latents z."""
            z = np.asarray(z, np.float32)
            out = np.concatenate([np.asarray(model.decoder(z[i:i + 500], training=False)) for i in range(0, len(z), 500)])
            unit = np.asarray(model.to_unit(model.decode_output_to_image(out)))
            return unit, out

        def row(name, unit, raw=None):
            record = {"run": run_dir, "what": name, "n": len(unit), "mean_intensity": round(float(unit.mean()), 4),
                      "ratio_to_validation": round(float(unit.mean() / data.real_unit.mean()), 3),
                      "pixels_above_0.5": round(float((unit > 0.5).mean()), 4),
                      "stroke_median": round(float(np.median(unit[unit > 0.05])), 3)}
            if raw is not None and config.model.kind == "vaegan":  # linear output clipped to [-1, 1]
                record.update({"clipped_below": round(float((raw < -1).mean()), 3),
                               "clipped_above": round(float((raw > 1).mean()), 4)})
            print(json.dumps(record), flush=True)

        row("(a) real validation digits", data.real_unit)
        row("real training digits", (train[:n] - low) / (high - low))
        row("(b) reconstructions of validation (mu)", *decoded(mu_va))
        row("(c) decoded training codes (mu)", *decoded(mu_tr[:n]))
        kinds = [k for k in ("gmm", "gaussian", "flow", "prior")
                 if k == "prior" or (Path(run_dir) / SAMPLERS_DIR / f"{k}.json").is_file()]
        for kind in kinds:
            sampler = load_sampler(run_dir, model.latent_dim, kind)
            label = {"gmm": "(d) ", "prior": "(e) "}.get(kind, "")
            row(f"{label}{kind} sampler (K={sampler.num_components})", *decoded(sampler.sample(n, seed)))
        gmm = load_sampler(run_dir, model.latent_dim, "gmm")
        z = load_sampler(run_dir, model.latent_dim, "prior").sample(4 * n, seed)
        unit, _ = decoded(z)
        density = gmm.log_prob(z)
        edges = np.quantile(density, [0.25, 0.5, 0.75])
        bins = np.digitize(density, edges)
        for b in range(4):
            chosen = bins == b
            print(json.dumps({"run": run_dir, "what": f"N(0, I) latents, quartile {b + 1} of log q(z) under the gmm",
                              "log_q_median": round(float(np.median(density[chosen])), 1),
                              "mean_intensity": round(float(unit[chosen].mean()), 4),
                              "pixels_above_0.5": round(float((unit[chosen] > 0.5).mean()), 4)}), flush=True)
        codes = gmm.log_prob(mu_va)
        print(json.dumps({"run": run_dir, "what": "log q(z) of the validation digits' codes (median)",
                          "log_q_median": round(float(np.median(codes)), 1),
                          "prior_latents_above_codes_5th_percentile": round(float(np.mean(density > np.quantile(codes, 0.05))), 4),
                          "latent_norm_codes": round(float(np.linalg.norm(mu_tr, axis=1).mean()), 2),
                          "latent_norm_prior": round(float(np.linalg.norm(z, axis=1).mean()), 2)}), flush=True)


def scales(run_dirs: list[str], values=(1.0, 1.1, 1.2, 1.3, 1.4), n: int = 1000, draws: int = 5) -> None:
    from keras_vae.evaluation.features import feature_net_for_run
    from keras_vae.evaluation.report import evaluation_data, sample_quality
    from keras_vae.runs.folder import load_run
    from keras_vae.sampling.draw import draw_samples
    from keras_vae.sampling.posterior import load_sampler
    from keras_vae.sampling.samplers import widened

    for run_dir in run_dirs:
        config, model = load_run(run_dir)
        data = evaluation_data(config)
        feature, _ = feature_net_for_run(config, run_dir, train_if_missing=True)
        stored = load_sampler(run_dir, model.latent_dim, "gmm")
        fitted_scale = float(stored.selection.get("covariance_scale", {}).get("scale", 1.0))
        for scale in values:
            sampler = widened(stored, scale / fitted_scale)
            sets = [draw_samples(model, n, seed=seed, latent_sampler=sampler) for seed in range(draws)]
            q = sample_quality(feature, data.real_unit, sets)
            print(json.dumps({"run": run_dir, "scale": scale, "chosen_by_training": fitted_scale,
                              **{k: round(q[k]["value"], 3) for k in ("frechet_distance", "frechet_distance_std",
                                                                        "precision", "recall", "intensity")}}),
                  flush=True)


def refit(run_dirs: list[str]) -> None:
    import time

    from keras_vae.data import make_datasets
    from keras_vae.runs.folder import load_run
    from keras_vae.training.after_fit import finish_training

    for run_dir in run_dirs:
        config, model = load_run(run_dir)
        data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                             batch_size=config.train.batch_size, seed=config.train.seed)
        val_images, _ = data.validation_arrays()
        model.recompute_batch_norm = lambda batches, seed=0: 0  # keep the stored statistics
        start_cpu, start = time.process_time(), time.time()
        result = finish_training(model, data.train, val_images, run_dir, seed=config.train.seed)
        sampler = result["sampler"]
        print(json.dumps({"run": run_dir, "chosen": sampler["chosen"], "components": sampler["components"],
                          "shrinkage": sampler.get("gmm_shrinkage"), "covariance_scale": sampler["gmm_covariance_scale"],
                          "held_out_scores": sampler["candidates"], "cpu_s": round(time.process_time() - start_cpu, 1),
                          "wall_s": round(time.time() - start, 1)}), flush=True)


def reencode(run_dirs: list[str], passes: int = 3, n: int = 1000, draws: int = 5) -> None:
    from keras_vae.evaluation.features import feature_net_for_run
    from keras_vae.evaluation.report import evaluation_data, sample_quality
    from keras_vae.runs.folder import load_run
    from keras_vae.sampling.posterior import load_sampler

    for run_dir in run_dirs:
        config, model = load_run(run_dir)
        data = evaluation_data(config)
        feature, _ = feature_net_for_run(config, run_dir, train_if_missing=True)
        sampler = load_sampler(run_dir, model.latent_dim, None)
        batched = lambda f, a: np.concatenate([np.asarray(f(a[i:i + 500])) for i in range(0, len(a), 500)])  # noqa: E731
        sets: list[list[np.ndarray]] = [[] for _ in range(passes + 1)]
        for seed in range(draws):
            x = batched(model.decode, np.asarray(sampler.sample(n, seed), np.float32))
            for k in range(passes + 1):
                sets[k].append(np.asarray(model.to_unit(x)))
                x = batched(lambda b: model.decode(model.encode(b)[0]), x) if k < passes else x
        for k, images in enumerate(sets):
            q = sample_quality(feature, data.real_unit, images)
            print(json.dumps({"run": run_dir, "reencode_passes": k,
                              **{name: round(q[name]["value"], 3) for name in ("frechet_distance", "frechet_distance_std",
                                                                               "precision", "recall", "intensity")}}),
                  flush=True)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a not in ("--quick", "--intensity", "--refit", "--scales", "--reencode")]
    if "--reencode" in sys.argv:
        reencode(args)
    elif "--scales" in sys.argv:
        scales(args)
    elif "--refit" in sys.argv:
        refit(args)
    elif "--intensity" in sys.argv:
        intensity(args)
    else:
        main(args, extra="--quick" not in sys.argv)
