"""Anomaly detection with one digit held out, and data completion against its baselines (not a test).

    PYTHONPATH=. python benchmarks/bench_applications.py [--epochs 50] [--digits 0 1 7 9] [--out benchmarks/results]

Anomaly detection: for each held-out digit k, the classic VAE (preset mnist-mlp, --epochs epochs)
is trained on the embedded digits with ``data.exclude_labels=[k]``; then ``keras-vae anomaly``
scores the run's validation split with every class (the held-out digit's ~50 images are the
anomalies, the ~450 others normal; none of them was trained on), thresholds fitted on the run's own
validation split (digit k excluded) at FPR 0.05. Reported: ROC-AUC per score and the detection
rate at the threshold.

Completion: the same recipe trained on all digits; ``keras-vae complete`` on the validation split
for the masks center, left and random:0.5; PSNR (dB) on the masked region per method.
Writes applications.json and applications.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(os.path.abspath(__file__)).parents[1]))

import numpy as np  # noqa: E402

SCORES = ("neg_elbo", "iwae_nll", "reconstruction_error", "mahalanobis")


def train_run(out: Path, epochs: int, exclude: list[int]) -> float:
    from keras_vae.config import merge
    from keras_vae.config.presets import get_preset
    from keras_vae.training.loop import train

    config = merge(get_preset("mnist-mlp"), {"train": {"epochs": epochs, "iwae_samples": 100},
                                            "data": {"exclude_labels": exclude}})
    start = time.perf_counter()
    train(config, out, verbose=0)
    return time.perf_counter() - start


def anomaly(run: Path, digit: int, tmp: Path, iwae: int) -> dict:
    from keras_vae.cli import main

    out = tmp / f"scores-{digit}.csv"
    assert main(["anomaly", str(run), "--split", "validation", "--iwae-samples", str(iwae),
                 "--out", str(out)]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    with open(out) as f:
        rows = list(csv.DictReader(f))
    truth = np.array([int(r["label"]) == digit for r in rows])
    detected = {s: float(np.mean([float(r[s]) > summary["thresholds"][s] for r, t in zip(rows, truth) if t]))
                for s in SCORES}
    return {"held_out": digit, "anomalies": int(truth.sum()), "normal": int((~truth).sum()),
            "roc_auc": summary["roc_auc"], "detection_rate_at_fpr": detected,
            "validation_flag_rate": summary["validation_flag_rate"], "fpr": summary["fpr"],
            "iwae_samples": iwae}


def completion(run: Path, tmp: Path, masks: list[str]) -> dict:
    from keras_vae.cli import main

    results = {}
    for mask in masks:
        out = tmp / f"complete-{mask.replace(':', '_')}"
        assert main(["complete", str(run), "--split", "validation", "--mask", mask, "--out", str(out)]) == 0
        report = json.loads((out / "report.json").read_text())
        report.pop("run_dir", None)  # a temporary folder: no machine paths in stored results
        results[mask] = report
    return results


def markdown(result: dict) -> str:
    lines = ["# Applications on the embedded digits", "",
             f"Machine: {result['machine']}; TensorFlow {result['tensorflow']}. Classic VAE (preset mnist-mlp, "
             f"{result['epochs']} epochs, latent 16). Produced by `benchmarks/bench_applications.py`.", "",
             "## Anomaly detection, one digit held out of training", "",
             "ROC-AUC of each score (held-out digit's validation images against the other digits' validation images; "
             f"IWAE K = {result['anomaly'][0]['iwae_samples']}); in brackets the fraction of held-out images flagged "
             f"at the threshold fitted for FPR {result['anomaly'][0]['fpr']} on the run's validation split.", "",
             "| held-out digit | anomalies / normal | " + " | ".join(SCORES) + " |",
             "|---|---|" + "---|" * len(SCORES)]
    for r in result["anomaly"]:
        cells = [f"{r['roc_auc'][s]:.3f} ({r['detection_rate_at_fpr'][s]:.2f})" for s in SCORES]
        lines.append(f"| {r['held_out']} | {r['anomalies']} / {r['normal']} | " + " | ".join(cells) + " |")
    mean = {s: np.mean([r["roc_auc"][s] for r in result["anomaly"]]) for s in SCORES}
    lines.append("| mean | | " + " | ".join(f"{mean[s]:.3f}" for s in SCORES) + " |")
    lines += ["", "## Data completion (validation split, model trained on all digits)", "",
              "PSNR in dB on the masked pixels ([0, 1] scale, mean ± standard error over images).", "",
              "| mask | missing | iterative re-encoding | latent optimisation | mean image | nearest neighbour |",
              "|---|---|---|---|---|---|"]
    for mask, rep in result["completion"].items():
        p = rep["psnr_masked_db"]
        cells = [f"{p[m]['mean']:.2f} ± {p[m]['stderr']:.2f}" for m in ("iterative", "latent", "mean_fill", "nearest")]
        lines.append(f"| {mask} | {rep['missing_fraction']:.0%} | " + " | ".join(cells) + " |")
    lines += ["", f"Wall-clock: {result['seconds']:.0f} s in all on a shared 2-core machine (timings inflated by other jobs)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--digits", type=int, nargs="+", default=[0, 1, 7, 9])
    parser.add_argument("--iwae-samples", type=int, default=200)
    parser.add_argument("--masks", nargs="+", default=["center", "left", "random:0.5"])
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args()
    import tensorflow as tf

    start = time.perf_counter()
    result = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "tensorflow": tf.__version__, "epochs": args.epochs, "anomaly": [], "train_seconds": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for digit in args.digits:
            run = tmp / f"run-without-{digit}"
            result["train_seconds"][str(digit)] = round(train_run(run, args.epochs, [digit]), 1)
            result["anomaly"].append(anomaly(run, digit, tmp, args.iwae_samples))
            print(json.dumps(result["anomaly"][-1]["roc_auc"]), flush=True)
        run = tmp / "run-all"
        result["train_seconds"]["all"] = round(train_run(run, args.epochs, []), 1)
        result["completion"] = completion(run, tmp, args.masks)
    result["seconds"] = time.perf_counter() - start
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "applications.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "applications.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
