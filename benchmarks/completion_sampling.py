"""Completion by sampling the conditional (Metropolis-within-Gibbs, importance sampling) against
pseudo-Gibbs re-encoding, MAP latent optimisation and the baselines, on the embedded digits (not a test).

    PYTHONPATH=. python benchmarks/completion_sampling.py [--run DIR] [--epochs 40] [--completions 10]

The classic VAE of bench_applications.py (preset mnist-mlp, binarised embedded digits, --epochs epochs;
trained into --run when that folder holds no run, reused otherwise: e.g. --run runs/vae-default, the
150-epoch run of the default ``keras-vae train`` job, which is only read); ``keras-vae complete --method all``
on the 500 validation digits for the masks center, left and random:0.5. Reported per method and mask:
PSNR (dB) on the hidden pixels of its point estimate, mean ± standard error over images (a sampling
method's point estimate: the per-pixel mean of its K completions); for the sampling methods also the mean
PSNR of one completion and the best of K; the coverage of 90% intervals and the Brier score on the hidden
pixels (a sampling method's predictive probability: its Bernoulli mixture; definitions in
keras_vae.applications.completion); the chains' acceptance rate and the importance weights' effective
sample size. Pseudo-Gibbs (iterative) here is deterministic (re-encoding with the encoder's mean), so its
K completions would coincide: its point estimate is its one completion. Writes completion_sampling.json and completion_sampling.md.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(os.path.abspath(__file__)).parents[1]))

from benchmarks.common import RESULTS, environment, write_result  # noqa: E402

METHODS = ("iterative", "latent", "metropolis", "importance", "mean_fill", "nearest")
LABELS = {"iterative": "pseudo-Gibbs (iterative)", "latent": "MAP latent", "metropolis": "Metropolis-within-Gibbs",
          "importance": "importance sampling", "mean_fill": "mean image", "nearest": "nearest neighbour"}


def _chains(result: dict, k: int) -> str:
    if result.get("mwg_start", "encoder") == "encoder":
        return "one chain per image, started at the encoder's mean of the MAP completion"
    c = result.get("mwg_chains") or k
    return f"{c} chains per image, each started at a latent resampled by importance sampling"


def markdown(result: dict) -> str:
    reports = result["completion"]
    k = next(iter(reports.values()))["completions"]
    lines = ["# Completion by sampling the conditional", "",
             f"Classic VAE (preset {result.get('preset', 'mnist-mlp')}, {result['epochs']} epochs"
             + (f", run folder `{result['run']}`" if result.get("run") else "")
             + f") on the {result['images']} embedded validation "
             f"digits; K = {k} completions; Metropolis-within-Gibbs: {result['mwg_steps']} steps (half burn-in) "
             f"in each of {_chains(result, k)}; {result['importance_samples']} importance samples. "
             f"Produced by `benchmarks/completion_sampling.py` in {result['seconds']:.0f} s on "
             f"{result['environment']['cpu']} ({result['environment']['cpu_count']} cores, shared with other jobs: "
             "the wall time is not a timing of the method).", "",
             "PSNR in dB on the hidden pixels (mean ± standard error over images) of each method's point estimate: "
             "for a sampling method the per-pixel mean of its K completions (multiple imputation), in brackets "
             "the mean PSNR of one completion and the best of the K:", "",
             "| mask | " + " | ".join(LABELS[m] for m in METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for mask, rep in reports.items():
        cells = []
        for m in METHODS:
            p = rep["psnr_masked_db"][m]
            cell = f"{p['mean']:.2f} ± {p['stderr']:.2f}"
            if m in rep.get("best_of_k_psnr_db", {}):
                cell += (f" ({rep['single_completion_psnr_db'][m]['mean']:.2f}; "
                         f"{rep['best_of_k_psnr_db'][m]['mean']:.2f})")
            cells.append(cell)
        lines.append(f"| {mask} | " + " | ".join(cells) + " |")
    lines += ["", "Coverage of 90% intervals / Brier score on the binarised hidden pixels (P(pixel = 1): a sampling "
              "method's Bernoulli mixture over its latent draws, another method's completion; nominal coverage "
              "0.90, lower Brier is better):", "",
              "| mask | " + " | ".join(LABELS[m] for m in METHODS) + " |", "|---|" + "---|" * len(METHODS)]
    for mask, rep in reports.items():
        cal = rep["calibration"]
        lines.append(f"| {mask} | " + " | ".join(f"{cal[m]['coverage']:.3f} / {cal[m]['brier']:.4f}"
                                                  for m in METHODS) + " |")
    lines += ["", "Diagnostics (mean over images): " + "; ".join(
        f"{mask}: acceptance {rep['diagnostics']['metropolis']['mean_acceptance_rate']:.2f}, "
        f"ESS {rep['diagnostics']['importance']['mean_effective_sample_size']:.1f} of {result['importance_samples']}"
        for mask, rep in reports.items()) + "."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="run folder to reuse, or to train into when empty")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--masks", nargs="+", default=["center", "left", "random:0.5"])
    parser.add_argument("--completions", type=int, default=10)
    parser.add_argument("--mwg-steps", type=int, default=100)
    parser.add_argument("--mwg-start", default="importance", choices=["importance", "encoder"])
    parser.add_argument("--mwg-chains", type=int, default=None)
    parser.add_argument("--importance-samples", type=int, default=1000)
    parser.add_argument("--max-examples", type=int, default=None, help="fewer validation images (a quick run)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    import tempfile

    from keras_vae.cli import main as cli

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else Path(tmp) / "run"
        train_seconds = None
        if not (run / "config.json").is_file():
            from benchmarks.bench_applications import train_run

            train_seconds = round(train_run(run, args.epochs, []), 1)
        config = json.loads((run / "config.json").read_text())
        epochs = config["train"]["epochs"]
        result = {"environment": environment(), "preset": config.get("preset"), "epochs": epochs,
                  "run": run.name if args.run else None, "train_seconds": train_seconds,
                  "mwg_steps": args.mwg_steps, "mwg_start": args.mwg_start, "mwg_chains": args.mwg_chains,
                  "importance_samples": args.importance_samples, "completion": {}}
        for mask in args.masks:
            out = Path(tmp) / f"complete-{mask.replace(':', '_')}"
            argv = ["complete", str(run), "--split", "validation", "--mask", mask, "--method", "all",
                    "--completions", str(args.completions), "--mwg-steps", str(args.mwg_steps),
                    "--importance-samples", str(args.importance_samples), "--mwg-start", args.mwg_start,
                    "--out", str(out)]
            if args.mwg_chains:
                argv += ["--mwg-chains", str(args.mwg_chains)]
            if args.max_examples:
                argv += ["--max-examples", str(args.max_examples)]
            t = time.perf_counter()
            assert cli(argv) == 0
            report = json.loads((out / "report.json").read_text())
            report.pop("run_dir", None)  # a temporary folder: no machine paths in stored results
            report["seconds"] = round(time.perf_counter() - t, 1)
            result["completion"][mask] = report
            result["images"] = report["images"]
    result["seconds"] = time.perf_counter() - start
    text = markdown(result)
    write_result("completion_sampling", result, text, Path(args.out))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
