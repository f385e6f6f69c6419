"""Metropolis-within-Gibbs (keras_vae.applications.completion.metropolis_fill) against two changes within
Mattei & Frellsen's Algorithm 1, on a validation subset (not a test; the subset the changes were judged on).

    PYTHONPATH=. python benchmarks/completion_mwg_variants.py --run DIR [--max-examples 100]

Variants per mask (center, left, random:0.5), all from the MAP latent completion as in ``complete_all``:
  default      200 steps, half burn-in, z_0 = the encoder's mean of the MAP completion (metropolis_fill)
  long         1000 steps, half burn-in (a longer chain)
  map_start    200 steps, z_0 = the MAP latent z*, x_hidden_0 ~ p(x_hidden | z*) (a state of the chain's space)
  map_start_long  both
  is_chains_T  K = 10 chains per image of T steps (half burn-in), each started at a latent resampled by importance
               sampling (1000 draws from q(z | x_MAP), another seed than the importance method's), one completion
               (its last state) per chain
Reported: PSNR (dB) on the hidden pixels of the per-pixel mean of the K = 10 completions (mean ± s.e.), the
mean single-completion PSNR, the best of K, 90% coverage and Brier score of the Bernoulli mixture (definitions
in keras_vae.applications.completion), acceptance rate. ``--variants`` runs a subset; rows of variants not run
are kept from the stored results. Writes completion_mwg_variants.json and .md.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(os.path.abspath(__file__)).parents[1]))

from benchmarks.common import RESULTS, environment, write_result  # noqa: E402

VARIANTS = {"default": dict(steps=200), "long": dict(steps=1000),
            "map_start": dict(steps=200, map_start=True), "map_start_long": dict(steps=1000, map_start=True),
            "is_chains_20": dict(steps=20, is_chains=10), "is_chains_50": dict(steps=50, is_chains=10),
            "is_chains_100": dict(steps=100, is_chains=10)}


def chain(model, images, mask, init, steps, z0=None, completions=10, seed=0):
    """metropolis_fill with burn-in steps // 2, optionally started at z0."""
    from keras_vae.applications.completion import metropolis_fill

    return metropolis_fill(model, images, mask, init, steps=steps, completions=completions, seed=seed, z0=z0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="trained classic VAE run folder (only read)")
    parser.add_argument("--max-examples", type=int, default=100)
    parser.add_argument("--masks", nargs="+", default=["center", "left", "random:0.5"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    import json

    import numpy as np

    from keras_vae.applications import completion as C
    from keras_vae.applications.encoding import psnr
    from keras_vae.commands import complete
    from keras_vae.commands.app_options import all_examples, open_run_and_source

    sub = argparse.ArgumentParser().add_subparsers()
    complete.add_parser(sub)
    cli_args = sub.choices["complete"].parse_args([args.run, "--split", "validation", "--max-examples",
                                                   str(args.max_examples), "--out", "unused"])
    config, model, source, _ = open_run_and_source(cli_args)
    reference = C.load_reference(model, config, 5000)
    images = np.asarray(model.to_unit(all_examples(cli_args, config, source).images), np.float32)
    start = time.perf_counter()
    stored = Path(args.out) / "completion_mwg_variants.json"
    old = json.loads(stored.read_text()) if stored.is_file() else {}
    result = {"environment": environment(), "run": Path(args.run).name, "images": len(images),
              "masks": old.get("masks", {}) if old.get("images") == len(images) else {}}
    for spec in args.masks:
        mask = C.make_mask(spec, len(images), images.shape[1:], seed=0)
        it = C.iterative_fill(model, images, mask, C.mean_fill(images, mask, reference.mean(0)), steps=30)
        lat, z_map = C.latent_fill(model, images, mask, it, steps=200, learning_rate=0.05, return_latents=True)
        rows = result["masks"].get(spec, {})
        rows["map_latent"] = {"psnr": list(C._mean_and_stderr(psnr(images, lat, mask))),
                               "coverage": C.interval_coverage(lat, images, mask),
                               "brier": C.brier_score(lat, images, mask)}
        for name in args.variants:
            kw = VARIANTS[name]
            t = time.perf_counter()
            z0 = z_map if kw.get("map_start") else None
            if kw.get("is_chains"):
                z0 = C.importance_fill(model, images, mask, lat, samples=1000, completions=kw["is_chains"], seed=1,
                                       return_latents=True)[3]
            filled, k, acc = chain(model, images, mask, lat, kw["steps"], z0)
            rows[name] = {"psnr": list(C._mean_and_stderr(psnr(images, k.mean(0), mask))),
                          "single": float(np.mean([psnr(images, s, mask) for s in k])),
                          "best_of_k": C._mean_and_stderr(np.max([psnr(images, s, mask) for s in k], 0))[0],
                          "coverage": C.interval_coverage(filled, images, mask),
                          "brier": C.brier_score(filled, images, mask), "acceptance": float(acc.mean()),
                          "seconds": round(time.perf_counter() - t, 1)}
            print(spec, name, rows[name], flush=True)
        result["masks"][spec] = rows
    result["seconds"] = time.perf_counter() - start
    lines = ["# Metropolis-within-Gibbs variants", "",
             f"Run folder `{result['run']}`, first {len(images)} embedded validation digits, K = 10, half burn-in; "
             "`benchmarks/completion_mwg_variants.py`. PSNR (dB) of the mean of the K completions (mean ± s.e.; for "
             "the MAP latent its completion), mean single-completion PSNR, best of K, 90% coverage and Brier score of "
             "the Bernoulli mixture, acceptance; rows without a single-completion PSNR were measured before it was "
             "reported and give the mean over all kept states instead:", "",
             "| mask | variant | PSNR | single | best of K | coverage | Brier | acceptance | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for spec, rows in result["masks"].items():
        for name, r in rows.items():
            lines.append(f"| {spec} | {name} | {r['psnr'][0]:.2f} ± {r['psnr'][1]:.2f} | "
                         + (f"{r['single']:.2f}" if "single" in r else "-") + " | "
                         + (f"{r['best_of_k']:.2f}" if "best_of_k" in r else "-")
                         + f" | {r['coverage']:.3f} | {r['brier']:.4f} | "
                         + (f"{r['acceptance']:.4f}" if "acceptance" in r else "-") + " | "
                         + (f"{r['seconds']:.0f}" if "seconds" in r else "-") + " |")
    text = "\n".join(lines) + "\n"
    write_result("completion_mwg_variants", result, text, Path(args.out))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
