"""Sample quality of finished runs under one protocol, VAEGAN against the classic VAE.

    python benchmarks/compare_default_samples.py RUN_DIR [RUN_DIR ...] [--samples 1000] [--draws 5] [--seed 0]

Every run is measured as ``keras-vae evaluate RUN --no-likelihood --draws R`` does: R independent sets
of ``--samples`` samples (seeds seed, seed + 1, ...) drawn with the run's default sampler (its
sampler.json, chosen by held-out code likelihood), against the validation split of the run's data, on
the in-house feature network; the same seeds for every run. One draw of 1000 samples moves FD by a few
points, so the table reports the mean over draws and its spread. Prints one JSON line per run (FD mean
and standard deviation, precision, recall, sharpness, reconstruction PSNR/SSIM) and a Markdown table.
"""
from __future__ import annotations

import argparse
import json


def measure(run_dir: str, samples: int, seed: int, draws: int) -> dict:
    from keras_vae.evaluation.features import feature_net_for_run
    from keras_vae.evaluation.report import evaluate_model, evaluation_data, scalars
    from keras_vae.sampling.draw import resolve_sampler
    from keras_vae.runs.folder import load_run

    config, model = load_run(run_dir)
    sampler, description = resolve_sampler(run_dir, None, config.model.latent_dim)
    feature = feature_net_for_run(config, run_dir, train_if_missing=True)
    result = evaluate_model(model, config, evaluation_data(config), num_samples=samples, seed=seed,
                            latent_sampler=sampler, sampler_description=description, feature=feature,
                            iwae_samples=None, draws=draws)
    values = scalars(result)
    return {"run": run_dir, "model": config.model.kind, "preset": config.preset, "sampler": description,
            "samples": samples, "draws": draws, "fd": values["sample_quality/frechet_distance"],
            "fd_std": values.get("sample_quality/frechet_distance_std", 0.0),
            "precision": values["sample_quality/precision"], "recall": values["sample_quality/recall"],
            "sharpness": values["sample_quality/sharpness"], "psnr": values["reconstruction/psnr"],
            "ssim": values["reconstruction/ssim"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for run in args.runs:
        rows.append(measure(run, args.samples, args.seed, args.draws))
        print(json.dumps(rows[-1]), flush=True)
    print(f"\nFD: mean +- standard deviation over {args.draws} draws of {args.samples} samples\n")
    print("| run | model | sampler | FD | precision | recall | sharpness | recon PSNR / SSIM |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['run']} | {r['model']} ({r['preset']}) | {r['sampler']} | {r['fd']:.1f} +- {r['fd_std']:.1f} | {r['precision']:.2f} | "
              f"{r['recall']:.2f} | {r['sharpness']:.2f} | {r['psnr']:.1f} dB / {r['ssim']:.2f} |")


if __name__ == "__main__":
    main()
