"""Class agreement of the class-conditional classic VAE (Sohn et al. 2015) on the embedded digits.

    python -m benchmarks.conditional_vae [--run RUN_DIR] [--out runs/bench-conditional] [--per-class 100]

Without ``--run`` it trains the default classic job with the label (``keras-vae train --conditional --out OUT``,
the mnist-mlp preset's budget), then draws ``per-class`` samples p(x|z, y=k), z ~ N(0, I), for each of the ten
digits and classifies them with the package's MNIST digit classifier (``keras_vae.evaluation.features.
mnist_feature_net``, trained on the real training digits). Class agreement = the fraction of samples classified
as the class they were drawn for, overall and per class. Writes benchmarks/results/conditional_vae.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import environment, write_result


def class_agreement(model, classifier, per_class: int = 100, seed: int = 0, class_samplers=None,
                    num_classes: int | None = None) -> dict:
    """Samples of every class classified by ``classifier`` (images in [0, 1] -> logits): {"overall", "per_class"
    {k: fraction}, "confusion" [requested][predicted] counts, "samples"}. A conditional ``model`` decodes
    p(x|z, y=k); z comes from ``class_samplers[k]`` (seed + k) when given, else from N(0, I) (``model.sample``).
    An unconditional model needs ``class_samplers``."""
    from keras_vae.sampling.draw import draw_samples

    k = num_classes or getattr(model, "num_classes", 0) or len(class_samplers)
    labels = np.repeat(np.arange(k), per_class)
    conditional = getattr(model, "conditional", False)

    def images_of(c: int) -> np.ndarray:
        if class_samplers is None:
            return np.asarray(model.to_unit(model.sample(per_class, seed=seed + c, label=c)))
        return draw_samples(model, per_class, seed=seed + c, latent_sampler=class_samplers[c],
                            labels=np.full(per_class, c) if conditional else None)

    images = np.concatenate([images_of(c) for c in range(k)])
    logits = classifier.predict(images, batch_size=256, verbose=0)
    predicted = np.argmax(logits, axis=1)
    confusion = np.zeros((k, logits.shape[1]), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return {"overall": float(np.mean(predicted == labels)),
            "per_class": {str(c): float(np.mean(predicted[labels == c] == c)) for c in range(k)},
            "confusion": confusion.tolist(), "samples": int(len(labels))}


def _class_samplers(run: str, model) -> tuple[dict, float | None]:
    """The run's class samplers (fitted into the run folder first when it has none) and the fit's seconds."""
    from keras_vae.sampling.classes import has_class_samplers, load_class_samplers
    from keras_vae.training.class_samplers import fit_class_samplers

    seconds = None
    if not has_class_samplers(run):
        started = time.time()
        fit_class_samplers(run)
        seconds = round(time.time() - started, 1)
    return load_class_samplers(run, model.latent_dim), seconds


def _per_class(agreement: dict) -> str:
    return " | ".join(f"{c}: {v:.0%}" for c, v in agreement["per_class"].items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="a finished conditional run (default: train one into --out)")
    parser.add_argument("--out", default="runs/bench-conditional")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unconditional-run", default=None,
                        help="also measure an unconditional run sampled by class through its class samplers "
                             "(fitted into that folder when it has none: pass a copy of a run you keep unchanged)")
    args = parser.parse_args()
    run, train_seconds = args.run, None
    if run is None:
        started = time.time()
        subprocess.run([sys.executable, "-m", "keras_vae", "train", "--conditional", "--out", args.out, "--quiet",
                        "--force"], check=True)
        run, train_seconds = args.out, round(time.time() - started, 1)

    from keras_vae.evaluation.features import mnist_feature_net
    from keras_vae.runs.folder import load_run
    from keras_vae.utils.files import read_json

    config, model = load_run(run)
    classifier, info = mnist_feature_net()
    agreement = class_agreement(model, classifier, per_class=args.per_class, seed=args.seed)
    samplers, fit_seconds = _class_samplers(run, model)
    with_samplers = class_agreement(model, classifier, per_class=args.per_class, seed=args.seed,
                                    class_samplers=samplers)
    unconditional = None
    if args.unconditional_run:
        u_config, u_model = load_run(args.unconditional_run)
        u_samplers, u_fit_seconds = _class_samplers(args.unconditional_run, u_model)
        unconditional = {
            "run": str(args.unconditional_run), "preset": u_config.preset, "epochs": u_config.train.epochs,
            "latent_dim": u_model.latent_dim, "class_sampler_fit_seconds": u_fit_seconds,
            "class_samplers": {str(c): {"kind": s.kind, "components": s.num_components} for c, s in u_samplers.items()},
            "class_agreement": class_agreement(u_model, classifier, per_class=args.per_class, seed=args.seed,
                                               class_samplers=u_samplers)}
    metrics = read_json(Path(run) / "metrics.json")
    validation = metrics.get("final", {}).get("validation", {})
    result = {
        "run": str(run), "preset": config.preset, "epochs": config.train.epochs, "num_classes": model.num_classes,
        "latent_dim": model.latent_dim, "train_seconds": metrics.get("train_seconds"),
        "wall_seconds_with_after_training": train_seconds,
        "validation_elbo_given_label": validation.get("elbo"), "iwae_log_p_x_given_label": validation.get("log_likelihood"),
        "iwae_k": validation.get("iwae_k"),
        "classifier": {"name": "mnist_feature_net", "validation_accuracy_on_real_digits": info.validation_accuracy},
        "per_class_samples": args.per_class, "seed": args.seed, "class_agreement": agreement,
        "class_agreement_class_samplers": with_samplers, "class_sampler_fit_seconds": fit_seconds,
        "class_samplers": {str(c): {"kind": s.kind, "components": s.num_components} for c, s in samplers.items()},
        "unconditional_with_class_samplers": unconditional,
        "environment": environment(),
    }
    per_class = " | ".join(f"{c}: {v:.0%}" for c, v in agreement["per_class"].items())
    markdown = (
        "# Class-conditional VAE: class agreement of its samples\n\n"
        f"`keras-vae train --conditional` (preset {config.preset}, {config.train.epochs} epochs, latent "
        f"{model.latent_dim}) on the embedded digits; {args.per_class} samples p(x|z, y=k), z ~ N(0, I), per digit k, "
        f"classified by the package's MNIST classifier (validation accuracy {info.validation_accuracy:.1%} on real "
        "digits).\n\n"
        f"- class agreement, z ~ N(0, I): **{agreement['overall']:.1%}** of {agreement['samples']} samples\n"
        f"- per class: {per_class}\n"
        f"- class agreement, z from class k's own sampler (samplers/classes.json, fitted on the codes of class k): "
        f"**{with_samplers['overall']:.1%}**\n"
        f"- per class: {_per_class(with_samplers)}\n"
        f"- validation ELBO of log p(x|y): {validation.get('elbo', float('nan')):.2f} nats; IWAE log p(x|y) "
        f"(K={validation.get('iwae_k')}): {validation.get('log_likelihood', float('nan')):.2f} nats\n"
        f"- training time: {metrics.get('train_seconds')} s\n\n"
        + ("" if unconditional is None else (
            f"Unconditional run {unconditional['run']} (preset {unconditional['preset']}, {unconditional['epochs']} "
            f"epochs), `keras-vae sample RUN --class k` (z from class k's sampler, decoded by p(x|z)): class agreement "
            f"**{unconditional['class_agreement']['overall']:.1%}**; per class: "
            f"{_per_class(unconditional['class_agreement'])}\n"))
        + "\nReproduce: `python -m benchmarks.conditional_vae` (or `--run RUN_DIR` for a finished run; "
        "`--unconditional-run COPY_OF_RUN` adds an unconditional run sampled by class).\n")
    paths = write_result("conditional_vae", result, markdown)
    print(json.dumps({"class_agreement": agreement["overall"], "class_samplers": with_samplers["overall"],
                      "unconditional": unconditional and unconditional["class_agreement"]["overall"],
                      "written": [str(p) for p in paths]}))


if __name__ == "__main__":
    main()
