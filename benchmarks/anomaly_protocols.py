"""The standard anomaly-detection protocols on the embedded digits, every score side by side (not a test).

    python -m benchmarks.anomaly_protocols [--one-class-preset mnist-mlp] [--one-class-epochs 20]
        [--loo-epochs 5] [--images grey] [--digits 0 1 ...]

The classic VAE recipe (preset mnist-mlp: MLP 784-500-32, Bernoulli decoder, dynamic binarization,
cosine learning rate; epochs cut to fit the budget; --one-class-preset mnist-conv: the convolutional
VAE, latent 16, 100 epochs, for the one-class runs) is trained in-process as ``keras_vae.training.loop.train``
trains it (same datasets, model, compile and seed) but without the run folder and the phases after the
epochs (latent samplers, sample-quality metrics, figures), which would cost more than the training here;
each model gets a background model for the likelihood ratio (``train_background``'s data and
configuration: the same recipe and epochs on its training images with each pixel replaced by uniform
8-bit noise at rate --perturb).

- one-class: for each digit d, train on d only (``data.exclude_labels`` = the nine others; ~450 training
  images); d's ~50 validation images are normal, the other digits' ~450 validation images anomalous.
- leave-one-class-out: for each digit d, train on the nine others; their ~450 validation images are
  normal, all of d's ~500 images (never trained on) anomalous.
- out-of-distribution: every leave-one-class-out model against inverted validation digits, uniform
  noise and Gaussian noise (N(0.5, 0.25^2) clipped) images, 200 each; AUC averaged over the ten models.
  scikit-image's sample images are used only when scikit-image is installed.

Every image is scored as it is, in grey levels (--images grey, the default; the models still train on
binarized images), or binarized (--images binarized: the runs' validation binarization; numpy-seeded
Bernoulli draws for the synthetic sets). A binarized image is one random draw of the grey one: its squared
error to a reconstruction r carries, in expectation, each pixel's draw variance x(1 - x) on top of (x - r)^2,
noise that says nothing about the model. Standard errors: DeLong's for each AUC (normal and anomalous
test images resampled as two independent samples; the models are held fixed), and the standard deviation
over digits / sqrt(10) for the means. No cross-fitting: with one model per digit the budget stays near 20 CPU minutes.
Writes benchmarks/results/anomaly_protocols.json and .md.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(os.path.abspath(__file__)).parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import RESULTS, environment, write_result  # noqa: E402

SCORES = ("neg_elbo", "iwae_nll", "reconstruction_error", "mahalanobis", "complexity_corrected", "likelihood_ratio")
PUBLISHED = {"Deep SVDD (Ruff et al., ICML 2018)": 0.948,
             "geometric transformations (Golan & El-Yaniv, NeurIPS 2018)": 0.98}


def delong(scores: np.ndarray, is_anomaly: np.ndarray) -> tuple[float, float]:
    """(AUC, DeLong standard error) with ties counted one half."""
    s, y = np.asarray(scores, np.float64), np.asarray(is_anomaly, bool)
    pos, neg = s[y], s[~y]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    var = v10.var(ddof=1) / len(pos) + v01.var(ddof=1) / len(neg)
    return float(psi.mean()), float(np.sqrt(var))


# The one-class recipes (--one-class-preset): the preset's model, batch 50, a cosine learning rate over the
# epochs here, the last epoch's weights. mnist-conv needs more steps than the MLP: at 20 epochs of ~450 images
# its normal validation digits' IWAE NLL was still ~200 nats (the MLP's ~135), at 100 epochs ~120.
ONE_CLASS_PRESETS = {"mnist-mlp": 20, "mnist-conv": 100}


def recipe(epochs: int, exclude: list[int], batch_size: int, seed: int, max_examples: int | None = None,
           preset: str = "mnist-mlp"):
    """``preset``'s configuration as the benchmark trains it: ``epochs`` of ``batch_size`` with the cosine
    learning rate, no best-epoch keeping (``fit`` skips the validation pass), ``exclude`` left out of both
    splits."""
    from keras_vae.config import merge
    from keras_vae.config.presets import get_preset

    return merge(get_preset(preset), {
        "train": {"epochs": epochs, "batch_size": batch_size, "lr_schedule": "cosine", "keep_best": False,
                  "iwae_samples": 10, "iwae_examples": 50, "summary_every": 0, "seed": seed},
        "data": {"exclude_labels": exclude, "max_examples": max_examples}})


def split_images(split: str, binarize: bool = True):
    """(images [N, 28, 28, 1] on [0, 1], labels) of the embedded digits' ``split``, binarized as the runs'
    validation images are."""
    from keras_vae.data import DataConfig, load_source
    from keras_vae.data.examples import load_examples

    batch = load_examples(load_source(DataConfig(source="embedded")), image_shape=(28, 28, 1),
                          value_range=(0.0, 1.0), split=split, binarize=binarize)
    return batch.images, batch.labels


def synthetic_sets(val_images: np.ndarray, n: int, seed: int, binarize: bool = True) -> dict[str, np.ndarray]:
    """Out-of-distribution sets in [0, 1], binarized with numpy's seeded Bernoulli draws when ``binarize``."""
    rng = np.random.default_rng(seed)
    grey, _ = val_images
    sets = {"inverted digits": 1.0 - grey[rng.choice(len(grey), n, replace=False)],
            "uniform noise": rng.random((n, 28, 28, 1)),
            "gaussian noise": np.clip(rng.normal(0.5, 0.25, (n, 28, 28, 1)), 0.0, 1.0)}
    try:  # only when scikit-image happens to be installed: its sample photographs at 28x28 grey
        from PIL import Image
        from skimage import data as skdata

        photos = []
        for name in ("camera", "astronaut", "coffee", "chelsea", "moon", "coins", "page", "horse"):
            img = np.asarray(getattr(skdata, name)(), np.float64)
            img = img.mean(-1) if img.ndim == 3 else img
            img = Image.fromarray((255 * (img - img.min()) / max(np.ptp(img), 1e-9)).astype(np.uint8))
            photos.append(np.asarray(img.resize((28, 28), Image.BILINEAR), np.float64)[:, :, None] / 255.0)
        sets["scikit-image photos"] = np.stack(photos)
    except ImportError:
        pass
    draws = {k: rng.random(v.shape) for k, v in sets.items()}  # drawn either way: the same sets for both
    return {k: ((draws[k] < v) if binarize else v).astype(np.float32) for k, v in sets.items()}


def score(model, bg, images: np.ndarray, iwae: int, seed: int) -> dict[str, np.ndarray]:
    """Every score of ``images`` under ``model`` (latent Gaussian on its training codes) and background ``bg``."""
    from keras_vae.applications.anomaly import anomaly_scores

    parts: dict[str, list] = {s: [] for s in SCORES}
    for start in range(0, len(images), 250):
        out = anomaly_scores(model, images[start:start + 250], model.latent_fit, iwae_samples=iwae, elbo_samples=4,
                             seed=seed, background=bg)
        for s in SCORES:
            parts[s].append(out[s])
    return {s: np.concatenate(v) for s, v in parts.items()}


def fit(config, binarize: bool | None = None):
    """The training step of ``keras_vae.training.loop.train`` (same datasets, model, compile, output bias, seed,
    learning-rate schedule) without the run folder and the phases after it (samplers, metrics, figures): the
    benchmark needs only the weights. Keeps the last epoch's weights (``recipe`` turns keep_best off: it
    needs the validation pass this skips); the latent Gaussian of ``mahalanobis`` is fitted on the training
    codes, of the images binarized when ``binarize`` (default: as the run binarizes), as ``keras-vae anomaly``
    fits it."""
    import keras

    from keras_vae.applications.anomaly import LatentGaussian
    from keras_vae.data import load_source, make_datasets
    from keras_vae.data.examples import load_examples
    from keras_vae.models import build_model
    from keras_vae.models.output_bias import initialize_output_bias
    from keras_vae.training.recipe import recipe_callbacks

    keras.utils.set_random_seed(config.train.seed)
    data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                         batch_size=config.train.batch_size, seed=config.train.seed)
    model = build_model(config)
    model.compile_for_training(config.train)
    initialize_output_bias(model, data.train)
    model.fit(data.train, epochs=config.train.epochs, verbose=0, shuffle=False,
              callbacks=recipe_callbacks(config, {}))

    train = load_examples(load_source(config.data), image_shape=config.model.image_shape,
                          value_range=config.model.value_range, split="train",
                          binarize=config.data.binarize if binarize is None else binarize)
    model.latent_fit = LatentGaussian.fit(np.asarray(model.encode(train.images)[0]))
    return model


def train_pair(tmp: Path, name: str, config, rate: float, seed: int, binarize: bool | None = None):
    """(model, background model, CPU seconds): ``config`` and its background (``train_background``'s data
    and configuration: the training images perturbed at ``rate``)."""
    from keras_vae.applications.anomaly import background_config, write_perturbed_images

    start = time.process_time()
    model = fit(config, binarize)
    data = tmp / f"{name}.perturbed.npz"
    write_perturbed_images(config, data, rate, seed)
    bg = fit(background_config(config, data), binarize)
    return model, bg, time.process_time() - start


def aucs(scores: dict[str, np.ndarray], truth: np.ndarray) -> dict[str, dict[str, float]]:
    return {s: dict(zip(("auc", "stderr"), delong(v, truth))) for s, v in scores.items()}


def mean_row(rows: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for s in SCORES:
        values = np.array([r["roc_auc"][s]["auc"] for r in rows])
        out[s] = {"auc": float(values.mean()),
                  "stderr": float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0}
    return out


def run_protocols(args, log=print) -> dict:
    import tensorflow as tf

    start, start_cpu = time.perf_counter(), time.process_time()
    binarize = args.images == "binarized"
    train_x, train_y = split_images("train", binarize)
    val_x, val_y = split_images("validation", binarize)
    ood = synthetic_sets(split_images("validation", binarize=False), args.ood_examples, args.seed, binarize)
    result = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "environment": environment(), "tensorflow": tf.__version__,
              "command": "python -m benchmarks.anomaly_protocols " + " ".join(sys.argv[1:]),
              "settings": {k: v for k, v in vars(args).items() if k != "out"},
              "published_one_class_mean_auc": PUBLISHED, "one_class": [], "leave_one_out": [], "ood": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for d in args.digits:
            config = recipe(args.one_class_epochs, [k for k in range(10) if k != d], args.one_class_batch, args.seed,
                            preset=args.one_class_preset)
            run, bg, cpu = train_pair(tmp, f"one-{d}", config, args.perturb, args.seed, binarize)
            truth = val_y != d
            scores = score(run, bg, val_x, args.iwae_samples, args.seed)
            result["one_class"].append({"digit": d, "normal": int((~truth).sum()), "anomalous": int(truth.sum()),
                                        "train_cpu_seconds": round(cpu, 1), "roc_auc": aucs(scores, truth)})
            log(f"one-class {d}: " + ", ".join(f"{s} {v['auc']:.3f}" for s, v in result["one_class"][-1]["roc_auc"].items()))
        for d in args.digits:
            config = recipe(args.loo_epochs, [d], 100, args.seed, args.loo_max_examples)
            run, bg, cpu = train_pair(tmp, f"loo-{d}", config, args.perturb, args.seed, binarize)
            normal = val_x[val_y != d]
            anomalous = np.concatenate([train_x[train_y == d], val_x[val_y == d]])
            sets = {"held-out digit": anomalous, **ood}
            images = np.concatenate([normal, *sets.values()])
            scores = score(run, bg, images, args.iwae_samples, args.seed)
            normal_scores = {s: v[:len(normal)] for s, v in scores.items()}
            offset, per_set = len(normal), {}
            for name, x in sets.items():
                part = {s: np.concatenate([normal_scores[s], v[offset:offset + len(x)]]) for s, v in scores.items()}
                truth = np.r_[np.zeros(len(normal), bool), np.ones(len(x), bool)]
                per_set[name] = aucs(part, truth)
                offset += len(x)
            result["leave_one_out"].append({"digit": d, "normal": len(normal), "anomalous": len(anomalous),
                                            "train_cpu_seconds": round(cpu, 1),
                                            "roc_auc": per_set.pop("held-out digit"), "ood": per_set})
            log(f"leave-{d}-out: " + ", ".join(f"{s} {v['auc']:.3f}"
                                               for s, v in result["leave_one_out"][-1]["roc_auc"].items()))
    result["one_class_mean"] = mean_row(result["one_class"])
    result["leave_one_out_mean"] = mean_row(result["leave_one_out"])
    for name in ood:
        result["ood"][name] = mean_row([{"roc_auc": r["ood"][name]} for r in result["leave_one_out"]])
        result["ood"][name]["examples"] = len(ood[name])
    result["wall_seconds"] = round(time.perf_counter() - start, 1)
    result["cpu_seconds"] = round(time.process_time() - start_cpu, 1)
    result["loadavg_end"] = list(os.getloadavg())
    return result


def _cell(v: dict, best: bool = False) -> str:
    text = f"{v['auc']:.3f} ± {v['stderr']:.3f}"
    return f"**{text}**" if best else text


def _table(rows: list[dict], key: str, mean: dict, what: str) -> list[str]:
    lines = [f"| {what} | normal / anomalous | " + " | ".join(SCORES) + " |", "|---|---|" + "---:|" * len(SCORES)]
    for r in rows:
        best = max(SCORES, key=lambda s: r["roc_auc"][s]["auc"])
        lines.append(f"| {r[key]} | {r['normal']} / {r['anomalous']} | "
                     + " | ".join(_cell(r["roc_auc"][s], s == best) for s in SCORES) + " |")
    best = max(SCORES, key=lambda s: mean[s]["auc"])
    lines.append("| mean ± s.e. over digits | | " + " | ".join(_cell(mean[s], s == best) for s in SCORES) + " |")
    return lines


def to_markdown(result: dict) -> str:
    st, env = result["settings"], result["environment"]
    cap = f", first {st['loo_max_examples']} images per split" if st.get("loo_max_examples") else ""
    header = (f"Produced by `{result['command']}` on {result['created']}: {env['cpu']} x{env['cpu_count']}, "
              f"TensorFlow {result['tensorflow']}, load average {env['loadavg'][0]:.1f} at start and "
              f"{result['loadavg_end'][0]:.1f} at end (a shared machine). Classic VAE: one-class runs preset "
              f"{st.get('one_class_preset', 'mnist-mlp')}, {st['one_class_epochs']} epochs (batch "
              f"{st['one_class_batch']}), leave-one-out runs preset mnist-mlp, {st['loo_epochs']} epochs (batch "
              f"100{cap}); cosine learning rate, last epoch's weights; each with a background run of the same "
              f"recipe on images perturbed at rate {st['perturb']}. Test images scored "
              f"{st.get('images', 'binarized')}. IWAE K = {st['iwae_samples']}, seed {st['seed']}. Budget: "
              f"{result['cpu_seconds'] / 60:.1f} CPU minutes of this process, {result['wall_seconds'] / 60:.1f} "
              "minutes wall-clock.")
    lines = [
        "# Anomaly-detection protocols on the embedded digits", "", header, "",
        "ROC-AUC ± DeLong standard error (test images resampled, models fixed); the mean rows give the standard "
        "error over the digits. Bold: the best score of the row.", "",
        "## One-class (train on one digit; its validation images normal, every other digit anomalous)", ""]
    lines += _table(result["one_class"], "digit", result["one_class_mean"], "normal digit")
    lines += ["", "Published mean AUC on full MNIST (6,000 training images per digit, as reported): "
              + "; ".join(f"{k} {v}" for k, v in result["published_one_class_mean_auc"].items()) + ".", "",
              "## Leave-one-class-out (train on nine digits; the tenth anomalous)", ""]
    lines += _table(result["leave_one_out"], "digit", result["leave_one_out_mean"], "held-out digit")
    lines += ["", "## Out-of-distribution sets (against each leave-one-out model's normal validation digits; "
              "mean ± s.e. over the ten models)", "",
              "| set | images | " + " | ".join(SCORES) + " |", "|---|---|" + "---:|" * len(SCORES)]
    for name, row in result["ood"].items():
        lines.append(f"| {name} | {row['examples']} | " + " | ".join(_cell(row[s]) for s in SCORES) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, with --one-class-epochs filled in from --one-class-preset when not given."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--digits", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--one-class-preset", choices=sorted(ONE_CLASS_PRESETS), default="mnist-mlp",
                        help="model of the one-class runs (the leave-one-out runs stay mnist-mlp)")
    parser.add_argument("--one-class-epochs", type=int, default=None,
                        help="default: " + ", ".join(f"{k} {v}" for k, v in ONE_CLASS_PRESETS.items()))
    parser.add_argument("--one-class-batch", type=int, default=50)
    parser.add_argument("--loo-epochs", type=int, default=5)
    parser.add_argument("--loo-max-examples", type=int, default=None,
                        help="cap on the images read per split before the held-out digit is dropped "
                             "(default: all 4,500 / 500)")
    parser.add_argument("--images", choices=("grey", "binarized"), default="grey",
                        help="score the test images as they are (grey levels) or binarized as the runs' "
                             "validation images (one seeded Bernoulli draw per pixel)")
    parser.add_argument("--perturb", type=float, default=0.2)
    parser.add_argument("--iwae-samples", type=int, default=32)
    parser.add_argument("--ood-examples", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.one_class_epochs is None:
        args.one_class_epochs = ONE_CLASS_PRESETS[args.one_class_preset]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run_protocols(args, log=lambda m: print(m, flush=True))
    write_result("anomaly_protocols", result, to_markdown(result), args.out)
    print(to_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
