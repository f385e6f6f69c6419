"""Class agreement and per-class FD of class-conditional models (the classic CVAE, the conditional VAEGAN).

    python -m benchmarks.conditional_vae [--model vaegan|vae] [--run RUN_DIR] [--out runs/bench-conditional]
                                         [--unconditional-run COPY_OF_RUN] [--per-class 100] [--draws 5]

Without ``--run`` it trains the default job of ``--model`` with the label (``keras-vae train --model M
--conditional --out OUT``: mnist-mlp for the classic VAE, mnist-28 for the VAEGAN), then draws ``draws`` sets of
``per-class`` samples of each of the ten digits (draw d, class k with seed + 10 d + k: draw 0 is the single draw
of earlier results), p(x|z, y=k) with z ~ N(0, I) and with z from class k's own sampler (``samplers/classes.json``,
fitted into the run first when it has none), and

- classifies them with two digit classifiers trained on the real embedded training digits: the package's
  ``mnist_feature_net`` (whose features also give the FD) and a stronger small CNN with light augmentation
  (``digit_cnn``, seeded, trained once and cached in ``OUT/digit_cnn``). Class agreement = the fraction of samples
  classified as the class they were drawn for, reported as the mean over the draws with its standard error
  (one draw of 1000 samples moves by about 0.7 points); each classifier's accuracy on the real validation digits
  bounds it;
- computes per-class FD: the Frechet distance (``mnist_feature_net`` features, as the sample-quality FD) between
  the samples of class k and the validation digits of class k, beside the FD of as many real training digits of
  class k (the floor at these sample sizes), each the mean over the draws.

``--unconditional-run`` adds an unconditional run of the same kind sampled by class through its class samplers
(fitted into that folder: pass a copy). Results go to benchmarks/results/conditional_vae.{json,md}, one section per
model kind (a measurement replaces only its kind's section).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, environment, write_result

CNN_EPOCHS = 12
CNN_SEED = 0


# --- data ---------------------------------------------------------------------------------------------
def real_digits(config) -> dict[str, np.ndarray]:
    """The run's source split into NumPy: train/validation images [N, H, W, C] in [0, 1] and int labels."""
    from keras_vae.data import load_source

    source = load_source(config.data)
    out = {}
    for split in ("train", "validation"):
        images, labels = zip(*((np.asarray(x), int(y)) for x, y in getattr(source, split).as_numpy_iterator()))
        images = np.stack(images)
        images = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
        out[split] = images if images.ndim == 4 else images[..., None]
        out[f"{split}_labels"] = np.asarray(labels, np.int64)
    return out


# --- the stronger classifier ----------------------------------------------------------------------------
def build_digit_cnn(image_shape) -> "keras.Model":  # noqa: F821
    """Images [B, H, W, C] in [0, 1] -> 10 logits: two conv blocks (32, 64 filters), dropout, a 128-unit head;
    random shifts (+-2 px) and rotations (+-8 degrees) in training only."""
    import keras

    inputs = keras.Input(shape=tuple(image_shape))
    h = keras.layers.RandomTranslation(0.07, 0.07, fill_mode="constant", seed=CNN_SEED)(inputs)
    h = keras.layers.RandomRotation(0.022, fill_mode="constant", seed=CNN_SEED + 1)(h)
    for filters in (32, 64):
        h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(h)
        h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dropout(0.3, seed=CNN_SEED + 2)(h)
    h = keras.layers.Dense(128, activation="relu")(h)
    h = keras.layers.Dropout(0.3, seed=CNN_SEED + 3)(h)
    return keras.Model(inputs, keras.layers.Dense(10)(h), name="digit_cnn")


def digit_cnn(digits: dict, cache: Path) -> tuple["keras.Model", dict]:  # noqa: F821
    """The stronger classifier, trained (seeded) on the real training digits once and cached in ``cache``;
    returns (model, info with its accuracy on the real validation digits)."""
    import keras

    weights, info_path = cache / "digit_cnn.weights.h5", cache / "digit_cnn.json"
    model = build_digit_cnn(digits["train"].shape[1:])
    if weights.is_file() and info_path.is_file():
        model.load_weights(weights)
        return model, json.loads(info_path.read_text())
    keras.utils.set_random_seed(CNN_SEED)
    model = build_digit_cnn(digits["train"].shape[1:])
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    started = time.time()
    model.fit(digits["train"], digits["train_labels"], batch_size=64, epochs=CNN_EPOCHS, shuffle=True, verbose=0)
    predicted = np.argmax(model.predict(digits["validation"], batch_size=256, verbose=0), axis=1)
    info = {"name": "digit_cnn", "epochs": CNN_EPOCHS, "seed": CNN_SEED, "num_train": int(len(digits["train"])),
            "validation_accuracy_on_real_digits": float(np.mean(predicted == digits["validation_labels"])),
            "train_seconds": round(time.time() - started, 1)}
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / ".digit_cnn.weights.h5"
    model.save_weights(tmp)
    os.replace(tmp, weights)
    info_path.write_text(json.dumps(info, indent=2) + "\n")
    return model, info


# --- measures ---------------------------------------------------------------------------------------------
def draw_seed(seed: int, draw: int, label: int, num_classes: int = 10) -> int:
    """The seed of class ``label``'s block in draw ``draw``: seed + num_classes * draw + label (draw 0: seed + k)."""
    return int(seed) + int(num_classes) * int(draw) + int(label)


def class_images(model, per_class: int = 100, seed: int = 0, class_samplers=None, num_classes: int = 10,
                 draw: int = 0):
    """[K * per_class] samples in [0, 1] (class k's block drawn with ``draw_seed(seed, draw, k)``) and their
    requested labels. A
    conditional ``model`` decodes p(x|z, y=k); z from ``class_samplers[k]`` when given, else from N(0, I)
    (``model.sample``). An unconditional model needs ``class_samplers``."""
    from keras_vae.sampling.draw import draw_samples

    conditional = getattr(model, "conditional", False)

    def images_of(c: int) -> np.ndarray:
        s = draw_seed(seed, draw, c, num_classes)
        if class_samplers is None:
            return np.asarray(model.to_unit(model.sample(per_class, seed=s, label=c)))
        return draw_samples(model, per_class, seed=s, latent_sampler=class_samplers[c],
                            labels=np.full(per_class, c) if conditional else None)

    return np.concatenate([images_of(c) for c in range(num_classes)]), np.repeat(np.arange(num_classes), per_class)


def agreement(classifier, images: np.ndarray, labels: np.ndarray) -> dict:
    """{"overall", "per_class" {k: fraction}, "confusion" [requested][predicted] counts, "samples"}."""
    logits = classifier.predict(images, batch_size=256, verbose=0)
    predicted = np.argmax(logits, axis=1)
    k = int(labels.max()) + 1
    confusion = np.zeros((k, logits.shape[1]), np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    return {"overall": float(np.mean(predicted == labels)),
            "per_class": {str(c): float(np.mean(predicted[labels == c] == c)) for c in range(k)},
            "confusion": confusion.tolist(), "samples": int(len(labels))}


def pooled_agreement(draws: list[dict]) -> dict:
    """``agreement`` of several draws in one: "overall" and "per_class" are the means over the draws, "stderr"
    the standard error of "overall" (sample standard deviation / sqrt(draws); 0 for one draw), "per_draw" the
    draws' overall values, "confusion" and "samples" their sums."""
    overall = np.array([a["overall"] for a in draws], np.float64)
    stderr = float(np.std(overall, ddof=1) / np.sqrt(len(overall))) if len(overall) > 1 else 0.0
    classes = list(draws[0]["per_class"])
    return {"overall": float(overall.mean()), "stderr": stderr, "draws": len(draws),
            "per_draw": overall.tolist(),
            "per_class": {c: float(np.mean([a["per_class"][c] for a in draws])) for c in classes},
            "confusion": np.sum([a["confusion"] for a in draws], axis=0).tolist(),
            "samples": int(sum(a["samples"] for a in draws))}


def mean_fd(draws: list[dict]) -> dict:
    """``per_class_fd`` of several draws: each class's FD and the overall mean, averaged over the draws."""
    classes = list(draws[0]["per_class"])
    values = {c: float(np.mean([fd["per_class"][c] for fd in draws])) for c in classes}
    return {"per_class": values, "mean": float(np.mean(list(values.values()))), "draws": len(draws)}


def per_class_fd(feature_net, images: np.ndarray, labels: np.ndarray, digits: dict) -> dict:
    """FD of each class's samples against that class's validation digits ({k: FD} and their mean)."""
    from keras_vae.evaluation.features import embed
    from keras_vae.evaluation.sample_quality import frechet_distance

    fake, real = embed(feature_net, images), embed(feature_net, digits["validation"])
    values = {str(c): frechet_distance(real[digits["validation_labels"] == c], fake[labels == c])
              for c in range(int(labels.max()) + 1)}
    return {"per_class": values, "mean": float(np.mean(list(values.values())))}


def real_floor_fd(feature_net, digits: dict, per_class: int, seed: int = 0, draws: int = 1) -> dict:
    """``per_class_fd`` of ``per_class`` real training digits of each class (draw d picked with seed + d), the
    mean over ``draws``: the FD a perfect model would get with these sample sizes."""
    def one(rng):
        picks = np.concatenate([rng.choice(np.flatnonzero(digits["train_labels"] == c), per_class, replace=False)
                                for c in range(10)])
        return per_class_fd(feature_net, digits["train"][picks], digits["train_labels"][picks], digits)

    return mean_fd([one(np.random.default_rng(seed + d)) for d in range(draws)])


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


class TrainingPosteriors:
    """Draws z = mu_i + sigma_i eps from the posteriors q(z|x_i, y) of random training images i of one class (NumPy,
    seeded): the aggregate posterior that a class sampler approximates, decoded as a diagnostic. Its samples are
    noisy reconstructions of training images, not new digits: the agreement a sampler that matched q(z|y) would
    reach, not a way to sample."""

    def __init__(self, means: np.ndarray, variances: np.ndarray):
        self.means, self.stds = np.asarray(means, np.float64), np.sqrt(np.asarray(variances, np.float64))

    def sample(self, n: int, seed: int = 0) -> np.ndarray:
        rng = np.random.default_rng(seed)
        picks = rng.integers(0, len(self.means), n)
        return (self.means[picks] + self.stds[picks] * rng.standard_normal((n, self.means.shape[1]))).astype(np.float32)


def training_posteriors(run: str) -> dict[int, TrainingPosteriors]:
    """{class: TrainingPosteriors} of the run's training codes (``class_codes``: the codes the class samplers are
    fitted on)."""
    from keras_vae.runs.folder import load_run
    from keras_vae.training.class_samplers import class_codes

    config, model = load_run(run)
    (means, variances, labels), _ = class_codes(config, model)
    return {int(c): TrainingPosteriors(means[labels == c], variances[labels == c]) for c in np.unique(labels)}


def measure(model, classifiers: dict, digits: dict, per_class: int, seed: int, class_samplers=None,
            draws: int = 1) -> dict:
    """Class agreement under every classifier and per-class FD of one way of sampling a model, pooled over
    ``draws`` draws (``pooled_agreement``, ``mean_fd``)."""
    agreements, fds = {name: [] for name in classifiers}, []
    for d in range(draws):
        images, labels = class_images(model, per_class, seed, class_samplers, draw=d)
        for name, net in classifiers.items():
            agreements[name].append(agreement(net, images, labels))
        fds.append(per_class_fd(classifiers["mnist_feature_net"], images, labels, digits))
    return {"agreement": {name: pooled_agreement(a) for name, a in agreements.items()}, "fd": mean_fd(fds),
            "per_class_samples": per_class, "draws": draws}


def measure_run(run: str, classifiers: dict, digits: dict, per_class: int, seed: int, draws: int = 1) -> dict:
    """Every measure of a run: N(0, I) (conditional runs) and class samplers (both kinds of run)."""
    from keras_vae.runs.folder import load_run
    from keras_vae.utils.files import read_json

    config, model = load_run(run)
    samplers, fit_seconds = _class_samplers(run, model)
    metrics = read_json(Path(run) / "metrics.json")
    validation = metrics.get("final", {}).get("validation", {})
    conditional = bool(getattr(model, "conditional", False))
    return {
        "run": str(run), "kind": config.model.kind, "preset": config.preset, "epochs": config.train.epochs,
        "conditional": conditional, "latent_dim": model.latent_dim, "train_seconds": metrics.get("train_seconds"),
        "validation_reconstruction_mae": metrics.get("final", {}).get("reconstruction_mae"),
        "validation_elbo": validation.get("elbo"), "iwae_log_p_x": validation.get("log_likelihood"),
        "iwae_k": validation.get("iwae_k"),
        "prior": measure(model, classifiers, digits, per_class, seed, draws=draws) if conditional else None,
        "class_samplers": measure(model, classifiers, digits, per_class, seed, samplers, draws),
        "training_posteriors": measure(model, classifiers, digits, per_class, seed, training_posteriors(run), draws)
        if conditional else None,
        "class_sampler_fit_seconds": fit_seconds,
        "class_sampler_kinds": {str(c): {"kind": s.kind, "components": s.num_components} for c, s in samplers.items()},
    }


# --- report ---------------------------------------------------------------------------------------------
def _pct(value) -> str:
    return "-" if value is None else f"{value:.1%}"


def _row(name: str, entry: dict | None, classifier: str) -> str:
    if entry is None:
        return ""
    a = entry["agreement"].get(classifier)
    if a is None:
        return ""
    cells = " | ".join(f"{v:.0%}" for v in a["per_class"].values())
    return f"| {name} | {cells} | {_overall(a)} |\n"


def _overall(a: dict) -> str:
    """The "all" cell: mean +- standard error over the draws, or the single draw marked as such."""
    draws = a.get("draws", 1)
    if draws > 1:
        return f"**{a['overall']:.1%}** ± {100 * a['stderr']:.1f}"
    return f"**{a['overall']:.1%}** (1 draw)"


def _fd_row(name: str, fd: dict | None) -> str:
    if fd is None:
        return ""
    cells = " | ".join(f"{v:.1f}" for v in fd["per_class"].values())
    return f"| {name} | {cells} | **{fd['mean']:.1f}** |\n"


def markdown(result: dict) -> str:
    classifiers = result["classifiers"]
    head = "| | " + " | ".join(str(c) for c in range(10)) + " | all |\n|---|" + "---|" * 11 + "\n"
    rows = []  # (name, entry) of every measured way of sampling
    for kind, label in (("vae", "classic CVAE"), ("vaegan", "conditional VAEGAN")):
        section = result["models"].get(kind) or {}
        conditional, unconditional = section.get("conditional"), section.get("unconditional")
        if conditional:
            rows.append((f"{label}, z ~ N(0, I)", conditional.get("prior")))
            rows.append((f"{label}, class samplers", conditional.get("class_samplers")))
            rows.append((f"{label}, training posteriors (ceiling, not a sampler)", conditional.get("training_posteriors")))
        if unconditional:
            rows.append((f"unconditional {kind.upper()}, class samplers", unconditional.get("class_samplers")))
    draws = result.get("draws", 1)
    single = any(a.get("draws", 1) == 1 for _, entry in rows if entry for a in entry["agreement"].values())
    marked = "; rows marked (1 draw) are one draw of 100 per digit (draw 0)" if single else ""
    text = ["# Class-conditional models: class agreement and per-class FD of their samples\n\n",
            f"{draws} draw(s) of {result['per_class_samples']} samples per digit (seed {result['seed']}; draw d, "
            "class k with seed + 10 d + k) from each model on the embedded digits. p(x|z, y=k) for a conditional "
            "model, p(x|z) with z from class k's sampler for an unconditional one. Agreement: the mean over the "
            f"draws ± its standard error in points, per digit the mean{marked}. FD: the mean over the draws. The "
            "training-posterior rows decode z = mu + sigma eps of random training images of class k (noisy "
            "reconstructions, not new digits): the agreement a class sampler that matched the aggregate posterior "
            "q(z|y=k) would reach.\n\n"]
    for name, info in classifiers.items():
        table = "".join(_row(row_name, entry, name) for row_name, entry in rows)
        if table:
            text.append(f"## Class agreement, {name} (accuracy on the real validation digits "
                        f"{_pct(info.get('validation_accuracy_on_real_digits'))})\n\n{head}{table}\n")
    fd_table = "".join(_fd_row(row_name, entry and entry.get("fd")) for row_name, entry in rows)
    if fd_table:
        text.append("## Per-class FD (mnist_feature_net features; samples of class k against the "
                    f"validation digits of class k)\n\n{head}{_fd_row('real training digits (floor)', result.get('real_floor_fd'))}"
                    f"{fd_table}\n")
    for kind in ("vae", "vaegan"):
        section = result["models"].get(kind) or {}
        for role in ("conditional", "unconditional"):
            entry = section.get(role)
            if entry:
                mae = entry.get("validation_reconstruction_mae")
                text.append(f"- {role} {kind}: {entry['run']} (preset {entry['preset']}, {entry['epochs']} epochs, "
                            f"latent {entry['latent_dim']}), training {entry.get('train_seconds')} s, validation "
                            f"reconstruction MAE {'-' if mae is None else f'{mae:.4f}'}\n")
    text.append("\nReproduce: `python -m benchmarks.conditional_vae --model vaegan` (or `--run RUN_DIR` for a "
                "finished run; `--unconditional-run COPY_OF_RUN` adds an unconditional run sampled by class).\n")
    return "".join(text)


def _previous() -> dict:
    path = RESULTS / "conditional_vae.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("vae", "vaegan"), default="vae",
                        help="the conditional model to train when --run is not given")
    parser.add_argument("--run", default=None, help="a finished conditional run (default: train one into --out)")
    parser.add_argument("--out", default="runs/bench-conditional")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--draws", type=int, default=5,
                        help="independent draws of --per-class samples per digit; agreement is their mean +- s.e.")
    parser.add_argument("--unconditional-run", default=None,
                        help="also measure an unconditional run sampled by class through its class samplers "
                             "(fitted into that folder when it has none: pass a copy of a run you keep unchanged)")
    args = parser.parse_args()
    run = args.run
    if run is None:
        run = str(Path(args.out) / f"conditional-{args.model}")
        subprocess.run([sys.executable, "-m", "keras_vae", "train", "--model", args.model, "--conditional",
                        "--out", run, "--quiet", "--force"], check=True)

    from keras_vae.evaluation.features import mnist_feature_net
    from keras_vae.runs.folder import load_run

    config, _ = load_run(run)
    digits = real_digits(config)
    feature_net, feature_info = mnist_feature_net()
    cnn, cnn_info = digit_cnn(digits, Path(args.out) / "digit_cnn")
    classifiers = {"mnist_feature_net": feature_net, "digit_cnn": cnn}
    section = {"conditional": measure_run(run, classifiers, digits, args.per_class, args.seed, args.draws)}
    if args.unconditional_run:
        section["unconditional"] = measure_run(args.unconditional_run, classifiers, digits, args.per_class, args.seed,
                                               args.draws)
    previous = _previous()
    models = dict(previous.get("models", {}))
    if previous and "models" not in previous:  # the classic-only layout: its numbers become the "vae" section
        models["vae"] = {"legacy": previous}
    models[config.model.kind] = section
    result = {
        "per_class_samples": args.per_class, "seed": args.seed, "draws": args.draws,
        "classifiers": {"mnist_feature_net": {"validation_accuracy_on_real_digits": feature_info.validation_accuracy},
                        "digit_cnn": cnn_info},
        "real_floor_fd": real_floor_fd(feature_net, digits, args.per_class, args.seed, args.draws),
        "models": models, "environment": environment(),
    }
    paths = write_result("conditional_vae", result, markdown(result))
    summary = {role: {"prior": entry["prior"] and {n: a["overall"] for n, a in entry["prior"]["agreement"].items()},
                      "class_samplers": {n: a["overall"] for n, a in entry["class_samplers"]["agreement"].items()},
                      "fd_mean": entry["class_samplers"]["fd"]["mean"]}
               for role, entry in section.items()}
    print(json.dumps({"kind": config.model.kind, **summary, "written": [str(p) for p in paths]}))


if __name__ == "__main__":
    main()
