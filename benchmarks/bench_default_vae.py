"""Ablation of the default job (preset mnist-mlp): what moves validation NLL on the embedded digits.

Each variant is the preset plus a few overrides, trained by ``keras_vae.training.loop.train`` with the same
seed; the numbers are the run's own metrics.json: validation ELBO and IWAE NLL (K = 1000, the 500
embedded validation digits), the epoch kept, optimizer steps and wall-clock seconds (the machine's
load is recorded beside them: timings on a shared machine are inflated).

    python benchmarks/bench_default_vae.py                       # every variant -> results/default_vae.{json,md}
    python benchmarks/bench_default_vae.py --only baseline final --epochs 5   # quick look
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

# The previous default and the new recipe, both as explicit overrides on the mnist-mlp preset (so the
# ablation stays meaningful whatever the preset says later); each other variant removes one ingredient.
BASELINE = {"model": {"latent_dim": 16}, "loss": {"objective": "elbo", "num_samples": 1},
            "train": {"lr_schedule": "constant", "keep_best": False}}
RECIPE = {"model": {"latent_dim": 20}, "loss": {"objective": "iwae", "num_samples": 5},
          "train": {"lr_schedule": "cosine", "keep_best": True}}
# The default before the quality target (latent 20, Adam 1e-3 constant, last epoch) and the recipe that
# replaced it (benchmarks/results/default_vae_recipe.md); the "recipe2-*" rows each remove one ingredient.
PREVIOUS = {"model": {"latent_dim": 20, "output_bias": "zero"}, "loss": {"objective": "elbo", "num_samples": 1},
            "train": {"epochs": 150, "batch_size": 100, "learning_rate": 1e-3, "lr_schedule": "constant",
                      "keep_best": False}}
RECIPE2 = {"model": {"latent_dim": 32, "output_bias": "data_mean"}, "loss": {"objective": "elbo", "num_samples": 1},
           "train": {"epochs": 150, "batch_size": 100, "learning_rate": 2e-3, "lr_schedule": "cosine",
                     "keep_best": True}}


def _with(base: dict, changes: dict) -> dict:
    merged = {k: dict(v) for k, v in base.items()}
    for section, values in changes.items():
        merged.setdefault(section, {}).update(values)
    return merged


# name -> (overrides on the mnist-mlp preset, what it is)
VARIANTS: dict[str, tuple[dict, str]] = {
    "baseline": (BASELINE, "previous default: 1 x 500 tanh, latent 16, ELBO (L = 1), Adam 1e-3 constant, last epoch"),
    "recipe": (RECIPE, "new default: latent 20, IWAE K = 5, cosine lr decay, best epoch by validation ELBO"),
    "recipe-elbo": (_with(RECIPE, {"loss": {"objective": "elbo", "num_samples": 1}}), "recipe with the ELBO (L = 1)"),
    "recipe-constant-lr": (_with(RECIPE, {"train": {"lr_schedule": "constant"}}), "recipe with a constant lr"),
    "recipe-last-epoch": (_with(RECIPE, {"train": {"keep_best": False}}), "recipe keeping the last epoch"),
    "recipe-latent16": (_with(RECIPE, {"model": {"latent_dim": 16}}), "recipe with latent 16"),
    "latent20": (_with(BASELINE, {"model": {"latent_dim": 20}}), "baseline with latent 20 (the canonical recipe)"),
    "latent20-wd": (_with(BASELINE, {"model": {"latent_dim": 20}, "train": {"weight_decay": 0.05}}),
                    "latent 20, AdamW weight decay 0.05 (x lr per step)"),
    "latent20-batch50": (_with(BASELINE, {"model": {"latent_dim": 20}, "train": {"batch_size": 50}}),
                         "latent 20, batch 50"),
    "latent20-iwae5": (_with(BASELINE, {"model": {"latent_dim": 20}, "loss": {"objective": "iwae", "num_samples": 5}}),
                       "latent 20, IWAE K = 5, constant lr"),
    "previous": (PREVIOUS, "the default before the quality target: latent 20, Adam 1e-3 constant, last epoch"),
    "recipe2": (RECIPE2, "latent 32, logits start at the data mean, Adam 2e-3 with cosine decay, best epoch"),
    "recipe2-latent20": (_with(RECIPE2, {"model": {"latent_dim": 20}}), "recipe2 with latent 20"),
    "recipe2-zero-bias": (_with(RECIPE2, {"model": {"output_bias": "zero"}}), "recipe2 with zero output bias"),
    "recipe2-lr1e-3-constant": (_with(RECIPE2, {"train": {"learning_rate": 1e-3, "lr_schedule": "constant",
                                                          "keep_best": False}}),
                                "recipe2 with the previous optimiser (Adam 1e-3 constant, last epoch)"),
}


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_variant(name: str, epochs: int | None, seed: int) -> dict:
    """Train one variant in a temporary folder; returns its numbers."""
    from keras_vae.config import merge
    from keras_vae.config.presets import get_preset
    from keras_vae.training.loop import train

    overrides, text = VARIANTS[name]
    config = merge(get_preset("mnist-mlp"), overrides)
    config = merge(config, {"train": {"seed": seed, **({"epochs": epochs} if epochs else {})}})
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        started, cpu_started = time.perf_counter(), _cpu_seconds()
        result = train(config, Path(tmp) / "run", verbose=0)
        seconds, cpu_seconds = time.perf_counter() - started, _cpu_seconds() - cpu_started
    metrics = result.metrics
    final = metrics["final"]["validation"]
    steps_per_epoch = -(-metrics["num_train"] // config.train.batch_size)
    return {
        "variant": name, "what": text, "overrides": overrides, "epochs": config.train.epochs,
        "steps": config.train.epochs * steps_per_epoch, "kept_epoch": metrics.get("kept_epoch"),
        "validation_elbo": final["elbo"], "nll": final["nll"], "nll_stderr": final["log_likelihood_stderr"],
        "iwae_k": final["iwae_k"], "examples": final["examples"],
        "train_seconds": metrics["train_seconds"], "wall_seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),  # user + sys of this process: less sensitive to the load than wall
        "load_average_before": round(load_before, 2), "load_average_after": round(os.getloadavg()[0], 2),
    }


def write_markdown(rows: list[dict], path: Path) -> None:
    lines = ["# Default job ablation (preset mnist-mlp, embedded digits)", "",
             "Validation NLL: IWAE estimate with K = 1000 on the 500 embedded validation digits (nats, lower is "
             "better; +- one standard error over examples, which is shared by all variants since the digits "
             "are the same). ELBO: single-sample validation ELBO. Seconds: wall-clock of the whole run "
             "(training, per-epoch diagnostics, final evaluation, figures) on a shared 2-core machine; the "
             "1-minute load average before/after is given because other jobs inflate it.", "",
             "| variant | what | epochs | steps | kept epoch | val. ELBO | val. NLL | seconds | load |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['what']} | {r['epochs']} | {r['steps']} | {r['kept_epoch'] or '-'} | "
                     f"{r['validation_elbo']:.2f} | {r['nll']:.2f} +- {r['nll_stderr']:.2f} | {r['wall_seconds']} | "
                     f"{r['load_average_before']}/{r['load_average_after']} |")
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, choices=sorted(VARIANTS), help="variants to run")
    parser.add_argument("--epochs", type=int, default=None, help="override every variant's epochs (quick looks)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS / "default_vae"), help="results path without suffix")
    args = parser.parse_args(argv)
    rows = []
    for name in args.only or list(VARIANTS):
        row = run_variant(name, args.epochs, args.seed)
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=2) + "\n")
    write_markdown(rows, out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
