"""Where does a run's sample Frechet distance come from: the decoder or the latent sampler?

    python benchmarks/diagnose_vaegan_samples.py [--quick] RUN_DIR [RUN_DIR ...]

For each run, FD / precision / recall (in-house MNIST features, against the validation digits) of:
reconstructions of the validation digits (decoder quality on codes the encoder makes), decodes of
training codes (the aggregate posterior's support, no sampler error), the stored samplers, Gaussian
mixtures with more components, and a kernel density of the training codes. The floor is real
training digits against the validation digits (same n).
"""
from __future__ import annotations

import json
import sys

import numpy as np


def main(run_dirs: list[str], n: int = 1000, seed: int = 0, extra: bool = True) -> None:
    from keras_vae.evaluation.features import feature_net_for_run
    from keras_vae.evaluation.report import evaluation_data
    from keras_vae.evaluation.sample_quality import frechet_distance, precision_recall
    from keras_vae.sampling.posterior import encode_batches, load_sampler
    from keras_vae.runs.folder import load_run
    from keras_vae.sampling.samplers import fit_gmm

    for run_dir in run_dirs:
        config, model = load_run(run_dir)
        data = evaluation_data(config)
        feature, _ = feature_net_for_run(config, run_dir, train_if_missing=True)
        from keras_vae.evaluation.features import embed
        real = embed(feature, data.real_unit)
        from keras_vae.data import make_datasets
        ds = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                           batch_size=500, seed=0)
        train = np.concatenate([np.asarray(b[0] if isinstance(b, tuple) else b) for b in ds.train])
        mu_tr, var_tr = encode_batches(model, (train[i:i + 500] for i in range(0, len(train), 500)))
        mu_va, _ = encode_batches(model, (data.model_images[i:i + 500] for i in range(0, len(data.model_images), 500)))

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


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--quick"]
    main(args, extra="--quick" not in sys.argv)
