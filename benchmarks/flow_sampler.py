"""The flow sampler against the Gaussian mixture: held-out code likelihood and sample FD of finished runs.

    python benchmarks/flow_sampler.py RUN_DIR [RUN_DIR ...] [--steps 3000] [--refit] [--samples 1000]
        [--draws 5] [--seed 0] [--out benchmarks/results/flow_sampler]

For each run: fits the ``flow`` sampler when the run has none (``keras_vae.training.after_fit.add_flow_sampler``,
which also re-chooses sampler.json by held-out likelihood; ``--refit`` fits it again), then measures every
stored candidate under the protocol of ``keras-vae evaluate --draws R`` / compare_default_samples.py: R
independent draws of ``--samples`` samples (seeds seed, seed + 1, ...) against the run's validation images on
the in-house feature network; FD mean +- standard deviation over the draws, precision, recall and the mean
intensity of the samples. The floors use the same draws: decoded training codes (posterior means of random
training images, no sampler error) and real training digits. Held-out code log-likelihood: mean log p(z) of
z = mu + sigma eps of the validation images (seed of the run), the score sampler.json is chosen by.
Writes OUT.json and OUT.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def measure(run_dir: str, *, samples: int, draws: int, seed: int, steps: int, refit: bool) -> dict:
    from keras_vae.data import make_datasets
    from keras_vae.evaluation.features import feature_net_for_run
    from keras_vae.evaluation.report import evaluation_data, sample_quality
    from keras_vae.runs.folder import load_run
    from keras_vae.sampling.draw import draw_samples
    from keras_vae.sampling.posterior import encode_batches, held_out_codes, load_sampler
    from keras_vae.training.after_fit import add_flow_sampler

    run = Path(run_dir)
    fit = None
    if refit or not (run / "samplers" / "flow.json").is_file():
        started = time.perf_counter()
        fit = add_flow_sampler(run, steps=steps)
        fit["wall_seconds"] = round(time.perf_counter() - started, 1)
        print(json.dumps({"run": run_dir, "flow_fit": fit["flow"], "chosen": fit["chosen"]}), flush=True)
    config, model = load_run(run)
    data = evaluation_data(config)
    feature, _ = feature_net_for_run(config, run, train_if_missing=True)
    held_out = held_out_codes(model, data.model_images, seed=config.train.seed)
    chosen = json.loads((run / "sampler.json").read_text())["kind"]
    row = {"run": run_dir, "model": config.model.kind, "preset": config.preset, "latent_dim": config.model.latent_dim,
           "samples": samples, "draws": draws, "seed": seed, "chosen": chosen,
           "real_mean_intensity": float(data.real_unit.mean()), "samplers": {}, "floors": {}}
    if fit is not None:
        row["flow_fit"] = fit

    def quality(sets: list[np.ndarray]) -> dict:
        section = sample_quality(feature, data.real_unit, sets, seed=seed)
        return {"fd": section["frechet_distance"]["value"],
                "fd_std": section.get("frechet_distance_std", {}).get("value", 0.0),
                "fd_draws": None, "precision": section["precision"]["value"], "recall": section["recall"]["value"],
                "mean_intensity": float(np.mean([s.mean() for s in sets]))}

    for kind in ("gaussian", "gmm", "flow"):
        sampler = load_sampler(run, model.latent_dim, kind)
        sets = [draw_samples(model, samples, seed=seed + i, latent_sampler=sampler) for i in range(draws)]
        entry = quality(sets)
        entry.update({"held_out_log_likelihood": float(np.mean(sampler.log_prob(held_out))),
                      "components": sampler.num_components})
        if kind == "flow":
            entry["flow"] = {k: sampler.selection.get(k) for k in ("couplings", "hidden", "best_step", "steps_run",
                                                                   "fit_seconds")}
            entry["parameters"] = sampler.num_parameters
        row["samplers"][kind] = entry
        print(json.dumps({"run": run_dir, "sampler": kind, **{k: v for k, v in entry.items() if k != "fd_draws"}}),
              flush=True)
    ds = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                       batch_size=500, seed=0)
    train = np.concatenate([np.asarray(b[0] if isinstance(b, (tuple, list)) else b) for b in ds.train])
    low, high = config.model.value_range
    rng = np.random.default_rng(seed)
    picks = [rng.choice(len(train), samples, replace=False) for _ in range(draws)]

    def decoded(images: np.ndarray) -> np.ndarray:
        mu, _ = encode_batches(model, (images[i:i + 500] for i in range(0, len(images), 500)))
        z = mu.astype(np.float32)
        return np.concatenate([np.asarray(model.to_unit(model.decode(z[i:i + 500]))) for i in range(0, len(z), 500)])

    row["floors"]["decoded training codes (mu)"] = quality([decoded(train[p]) for p in picks])
    row["floors"]["real training digits"] = quality([(train[p] - low) / (high - low) for p in picks])
    for name, entry in row["floors"].items():
        print(json.dumps({"run": run_dir, "floor": name, **entry}), flush=True)
    return row


def to_markdown(rows: list[dict], args) -> str:
    lines = ["# Flow sampler against the Gaussian mixture", "",
             f"`python benchmarks/flow_sampler.py {' '.join(args.runs)} --steps {args.steps} --samples {args.samples} "
             f"--draws {args.draws}` ({platform.machine()}, 2 shared CPU cores). FD: in-house MNIST feature network, "
             f"mean +- standard deviation over {args.draws} draws of {args.samples} samples (seeds {args.seed}.."
             f"{args.seed + args.draws - 1}) against the validation digits, as `keras-vae evaluate --draws`. "
             "Held-out log-likelihood: mean log p(z) in nats of z = mu + sigma eps of the validation digits "
             "(the score sampler.json is chosen by).", ""]
    for r in rows:
        title = f"{r['run']} ({r['model']}, {r['preset']}, latent {r['latent_dim']}; sampler.json: {r['chosen']})"
        lines += [f"## {title}", "",
                  "| latents | held-out log-lik | FD | precision | recall | mean intensity |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for kind, e in r["samplers"].items():
            what = f"{kind} (K={e['components']})" if kind != "flow" else (
                f"flow ({e['flow']['couplings']} couplings x {e['flow']['hidden']} units, {e['parameters']:,} "
                f"parameters, best step {e['flow']['best_step']})")
            lines.append(f"| {what} | {e['held_out_log_likelihood']:.2f} | {e['fd']:.1f} +- {e['fd_std']:.1f} | "
                         f"{e['precision']:.2f} | {e['recall']:.2f} | {e['mean_intensity']:.4f} |")
        for name, e in r["floors"].items():
            lines.append(f"| {name} | | {e['fd']:.1f} +- {e['fd_std']:.1f} | {e['precision']:.2f} | "
                         f"{e['recall']:.2f} | {e['mean_intensity']:.4f} |")
        lines += ["", f"Real validation digits: mean intensity {r['real_mean_intensity']:.4f}.", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--refit", action="store_true")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/flow_sampler")
    args = parser.parse_args()
    rows = [measure(run, samples=args.samples, draws=args.draws, seed=args.seed, steps=args.steps, refit=args.refit)
            for run in args.runs]
    out = Path(args.out)
    from keras_vae.utils.files import atomic_path

    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps({"rows": rows}, indent=1) + "\n")
    with atomic_path(out.with_suffix(".md")) as tmp:
        tmp.write_text(to_markdown(rows, args))
    print(to_markdown(rows, args))


if __name__ == "__main__":
    main()
