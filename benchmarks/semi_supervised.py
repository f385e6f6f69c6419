"""Semi-supervised classification with model M2 (Kingma et al. 2014) on the embedded digits, from few labels.

    python -m benchmarks.semi_supervised [--labelled 100 1000] [--seeds 0 1 2] [--epochs 50] [--out runs/bench-ssl]

For each N and seed: ``keras-vae train --labelled N`` (``keras_vae.train`` on the mnist-mlp preset with
data.labelled = N, the preset's model and optimiser, ``--epochs`` epochs with its cosine schedule), and the
validation classification error of q(y|x) on the 500 validation digits at the end of training (no epoch
selection by that error). Beside it, a supervised baseline: the same classifier network (``build_classifier``)
trained on the same N labelled images only (the same batches, dynamically binarized, for the same number of
steps), cross-entropy, Adam at the preset's learning rate and cosine schedule. Writes
benchmarks/results/semi_supervised.{json,md} after every run (partial results survive an interruption).

    python -m benchmarks.semi_supervised --m1-run runs/vae-default --only-m1-m2 [--epochs 50]

adds M1+M2 to the results file's runs: M2 (Gaussian likelihood with learned variance, MLP 500 tanh, latent 32)
trained on the codes of a trained classic VAE, M1 (its posterior means of the grey training digits; M1 was
trained without labels on the same 4,500 training digits), with the same N labelled images (same indices).
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.common import environment, write_result

# Kingma et al. (2014), Table 1, MNIST with 50,000 training images: test error in % (mean, std over runs)
PUBLISHED = {100: {"M2": (11.97, 1.71), "M1+M2": (3.33, 0.14)},
             1000: {"M2": (3.60, 0.56), "M1+M2": (2.40, 0.02)}}


def run_config(n: int, seed: int, epochs: int):
    """The mnist-mlp preset with N labels (10 classes), ``epochs``, a small final IWAE estimate, no image logs."""
    from keras_vae.config import merge
    from keras_vae.config.presets import get_preset

    return merge(get_preset("mnist-mlp"), {
        "data": {"labelled": n}, "model": {"num_classes": 10},
        "train": {"epochs": epochs, "seed": seed, "iwae_samples": 10, "iwae_examples": 100, "summary_every": 0}})


def train_m2(n: int, seed: int, epochs: int, out: Path) -> dict:
    """One M2 run; its classification error per epoch and at the end, and the wall time."""
    from keras_vae.training.loop import train

    started = time.time()
    result = train(run_config(n, seed, epochs), out / f"m2-n{n}-seed{seed}", verbose=0, force=True)
    curve = [e["validation"].get("classification_error") for e in result.metrics["epochs"]]
    return {"error": result.metrics["final"]["classification_error"], "wall_seconds": round(time.time() - started, 1),
            "kept_epoch": result.metrics.get("kept_epoch"), "validation_error_per_epoch": curve,
            "validation_elbo": result.metrics["final"]["validation"]["elbo"]}


def train_supervised(n: int, seed: int, epochs: int) -> dict:
    """The classifier alone on the N labelled images of the M2 run (same selection, batches and step count)."""
    import keras
    import tensorflow as tf

    from keras_vae.data import make_datasets
    from keras_vae.models.semi_supervised import build_classifier
    from keras_vae.training.recipe import CosineLearningRate
    from keras_vae.training.semi_supervised import semi_supervised_data

    config = run_config(n, seed, epochs)
    keras.utils.set_random_seed(seed)
    semi = semi_supervised_data(config)
    data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                         batch_size=config.train.batch_size, seed=seed, labels=True)
    val_x, val_y = data.validation_arrays()
    classifier = build_classifier(config.model)
    classifier.compile(optimizer=keras.optimizers.Adam(config.train.learning_rate),
                       loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    started = time.time()
    classifier.fit(semi.train.map(lambda d: (d["images"], d["labels"])), epochs=epochs, verbose=0,
                   callbacks=[CosineLearningRate(config.train.learning_rate, epochs)])
    predicted = np.argmax(classifier.predict(val_x, batch_size=500, verbose=0), axis=1)
    del tf
    return {"error": float(np.mean(predicted != val_y)), "wall_seconds": round(time.time() - started, 1)}


def codes(model, images: np.ndarray) -> np.ndarray:
    """M1's posterior means of uint8 images [N, 28, 28], as M2 inputs [N, D, 1, 1]."""
    x = images.reshape(len(images), 28, 28, 1).astype(np.float32) / 255.0
    mean = model.predict_in_batches(lambda batch: model.encode(batch)[0], x, 500)
    return mean[:, :, None, None]


def source_arrays(split) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images, labels) of an unbatched (image, label) dataset, in its order."""
    pairs = list(split.as_numpy_iterator())
    return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs], np.int64)


def train_m1_m2(n: int, seed: int, epochs: int, m1_run: str) -> dict:
    """M2 on M1's codes of the same N labelled (same indices as ``--labelled N``) and the other training images."""
    import keras

    import keras_vae
    from keras_vae.data import load_source
    from keras_vae.data.labelled import stratified_labelled_indices
    from keras_vae.models.semi_supervised import semi_supervised_dataset
    from keras_vae.training.recipe import CosineLearningRate

    config = run_config(n, seed, epochs)
    source = load_source(config.data)
    train_x, train_y = source_arrays(source.train)
    val_x, val_y = source_arrays(source.validation)
    chosen = stratified_labelled_indices(train_y, n, 10, seed)
    mask = np.zeros(len(train_y), bool)
    mask[chosen] = True
    m1 = keras_vae.load(m1_run)
    z_train, z_val = codes(m1, train_x), codes(m1, val_x)
    keras.utils.set_random_seed(seed)
    m2 = keras_vae.SemiSupervisedVAE(image_shape=(z_train.shape[1], 1, 1), likelihood="gaussian", learn_variance=True,
                                     latent_dim=32, hidden_units=(500,), activation="tanh", output_bias="zero",
                                     num_classes=10, num_labelled=int(mask.sum()), num_unlabelled=int((~mask).sum()),
                                     learning_rate=config.train.learning_rate, seed=seed)
    m2.compile()
    started = time.time()
    m2.fit(semi_supervised_dataset(z_train[~mask], z_train[mask], train_y[mask], batch_size=100, seed=seed),
           epochs=epochs, verbose=0, callbacks=[CosineLearningRate(config.train.learning_rate, epochs)])
    return {"error": m2.classification_error(z_val, val_y), "wall_seconds": round(time.time() - started, 1)}


def summary(values: list[float]) -> str:
    """'mean +- std (n)' in percent; std over seeds (n - 1 denominator)."""
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    std = 100 * statistics.stdev(values) if len(values) > 1 else math.nan
    return f"{mean:.2f} +- {std:.2f} ({len(values)})" if len(values) > 1 else f"{mean:.2f} (1)"


def markdown(result: dict) -> str:
    lines = ["# Semi-supervised M2 on the embedded digits", "",
             f"{result['num_train']} training images (N labelled, the rest unlabelled), error on the "
             f"{result['num_validation']} validation digits, {result['epochs']} epochs (mnist-mlp preset: MLP 500 "
             "tanh, latent 32, Adam 2e-3 cosine, batch 100 unlabelled + min(100, N) labelled). "
             "Validation error in %, mean +- std over seeds (count).", "",
             "| N labels | M2 (here) | M1+M2 (here) | supervised classifier only (here) | "
             "M2 (paper, 50,000 images) | M1+M2 (paper) |", "|---|---|---|---|---|---|"]
    for n in result["labelled"]:
        runs = [r for r in result["runs"] if r["labelled"] == n]
        m2 = summary([r["m2"]["error"] for r in runs if "m2" in r])
        sup = summary([r["supervised"]["error"] for r in runs if "supervised" in r])
        m1m2 = summary([r["m1_m2"]["error"] for r in runs if "m1_m2" in r])
        paper = PUBLISHED.get(n, {})
        fmt = lambda key: f"{paper[key][0]:.2f} +- {paper[key][1]:.2f}" if key in paper else "-"  # noqa: E731
        lines.append(f"| {n} | {m2} | {m1m2} | {sup} | {fmt('M2')} | {fmt('M1+M2')} |")
    lines += ["", "| N | seed | M2 error | M1+M2 error | supervised error | M2 wall s | M1+M2 wall s | supervised wall s |",
              "|---|---|---|---|---|---|---|---|"]
    for r in result["runs"]:
        m2, m1m2, sup = r.get("m2", {}), r.get("m1_m2", {}), r.get("supervised", {})
        pct = lambda d: f"{100 * d['error']:.2f}%" if "error" in d else "-"  # noqa: E731
        lines.append(f"| {r['labelled']} | {r['seed']} | {pct(m2)} | {pct(m1m2)} | {pct(sup)} | "
                     f"{m2.get('wall_seconds', '-')} | {m1m2.get('wall_seconds', '-')} | {sup.get('wall_seconds', '-')} |")
    env = result["environment"]
    lines += ["", f"Measured on {env['cpu']} ({env['cpu_count']} cores, shared), Python {env['python']}.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labelled", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--out", default="runs/bench-ssl")
    parser.add_argument("--m1-run", default=None, help="a trained classic VAE run: also train M1+M2 on its codes")
    parser.add_argument("--only-m1-m2", action="store_true",
                        help="add M1+M2 to the runs of the existing results file, training nothing else")
    args = parser.parse_args(argv)
    if args.only_m1_m2:
        return add_m1_m2(args)
    from keras_vae.data import make_datasets

    config = run_config(args.labelled[0], 0, args.epochs)
    data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                         batch_size=100, seed=0, labels=True)
    result = {"labelled": args.labelled, "seeds": args.seeds, "epochs": args.epochs, "num_train": data.num_train,
              "num_validation": data.num_validation, "published": {str(k): v for k, v in PUBLISHED.items()},
              "environment": environment(), "runs": []}
    for seed in args.seeds:
        for n in args.labelled:
            entry = {"labelled": n, "seed": seed}
            result["runs"].append(entry)
            entry["supervised"] = train_supervised(n, seed, args.epochs)
            entry["m2"] = train_m2(n, seed, args.epochs, Path(args.out))
            if args.m1_run:
                entry["m1_m2"] = train_m1_m2(n, seed, args.epochs, args.m1_run)
            print(f"N={n} seed={seed}: M2 {100 * entry['m2']['error']:.2f}% ({entry['m2']['wall_seconds']} s), "
                  f"supervised {100 * entry['supervised']['error']:.2f}%", flush=True)
            result["environment"]["loadavg"] = environment()["loadavg"]
            write_result("semi_supervised", result, markdown(result))
    return 0


def add_m1_m2(args) -> int:
    """M1+M2 for every (N, seed) asked, into the existing results file (entries made where missing)."""
    import json

    from benchmarks.common import RESULTS

    result = json.loads((RESULTS / "semi_supervised.json").read_text())
    if result["epochs"] != args.epochs:
        raise SystemExit(f"the results file has {result['epochs']} epochs: pass --epochs {result['epochs']}")
    result["m1_run"] = args.m1_run
    for seed in args.seeds:
        for n in args.labelled:
            entry = next((r for r in result["runs"] if (r["labelled"], r["seed"]) == (n, seed)), None)
            if entry is None:
                entry = {"labelled": n, "seed": seed}
                result["runs"].append(entry)
            entry["m1_m2"] = train_m1_m2(n, seed, args.epochs, args.m1_run)
            print(f"N={n} seed={seed}: M1+M2 {100 * entry['m1_m2']['error']:.2f}% ({entry['m1_m2']['wall_seconds']} s)",
                  flush=True)
            write_result("semi_supervised", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
