"""keras-vae anomaly: per-image anomaly scores of a data source, thresholds fitted on validation data."""
from __future__ import annotations

import argparse

from keras_vae.commands.app_options import add_run_and_data_options


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "anomaly", help="anomaly scores of a data source -> scores.csv",
        description="Score every image of a data source: -ELBO and IWAE NLL (classic VAE; nats), reconstruction "
                    "error (mean squared, [0, 1] pixels) and the Mahalanobis distance of the posterior mean to a "
                    "Gaussian fitted to the codes of the run's training split (both models). Thresholds are fitted "
                    "on the run's validation split (normal data, held-out classes excluded) at --fpr; the CSV's "
                    "'anomalous' column applies the one of --score. Writes FILE (one row per image: index, name, "
                    "label when known, every score, anomalous) and FILE with .json (thresholds, and ROC-AUC per "
                    "score when the anomalous labels are known).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_and_data_options(parser)
    parser.add_argument("--fpr", type=float, default=0.05,
                        help="false-positive rate the thresholds allow on the validation split")
    parser.add_argument("--score", default=None,
                        choices=["neg_elbo", "iwae_nll", "reconstruction_error", "mahalanobis"],
                        help="score behind the 'anomalous' column (default: iwae_nll for a VAE, "
                             "reconstruction_error for a VAEGAN)")
    parser.add_argument("--iwae-samples", type=int, default=200, metavar="K", help="importance samples for iwae_nll")
    parser.add_argument("--elbo-samples", type=int, default=10, metavar="S", help="samples averaged for neg_elbo")
    parser.add_argument("--fit-examples", type=int, default=5000, metavar="N",
                        help="training images the latent Gaussian is fitted on")
    parser.add_argument("--anomalous-labels", default=None, metavar="L,L",
                        help="labels that count as anomalies for ROC-AUC (default: the run's data.exclude_labels)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the importance samples")
    parser.add_argument("--out", default="scores.csv", metavar="FILE", help="CSV to write")
    return parser


def _labels(text: str | None, default) -> tuple[int, ...]:
    from keras_vae.errors import ConfigError

    if text is None:
        return tuple(default)
    try:
        return tuple(int(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise ConfigError(f"--anomalous-labels must be integers separated by commas, e.g. 7 or 1,7; got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from keras_vae.applications.anomaly import (LatentGaussian, anomaly_scores, available_scores, check_fpr,
                                                fit_threshold, roc_auc)
    from keras_vae.applications.report import write_csv
    from keras_vae.commands.app_options import check_positive, example_batches, open_run_and_source
    from keras_vae.data import load_source
    from keras_vae.data.examples import iterate_examples, load_examples
    from keras_vae.errors import ConfigError
    from keras_vae.utils.files import write_json

    check_fpr(args.fpr)
    check_positive(args, "iwae_samples", "elbo_samples", "fit_examples")
    config, model, source, _ = open_run_and_source(args)
    names = available_scores(model)
    score = args.score or ("iwae_nll" if "iwae_nll" in names else "reconstruction_error")
    if score not in names:
        raise ConfigError(f"--score {score} needs a likelihood, which a {type(model).__name__} does not have: "
                          f"choose {', '.join(names)}")
    anomalous = _labels(args.anomalous_labels, config.data.exclude_labels)
    shape, value_range, binarize = config.model.image_shape, config.model.value_range, config.data.binarize
    kw = dict(iwae_samples=args.iwae_samples, elbo_samples=args.elbo_samples, seed=args.seed)

    # Normal data = the run's own source with its exclusions: latent fit on training, thresholds on validation.
    run_source = load_source(config.data)
    train = load_examples(run_source, image_shape=shape, value_range=value_range, split="train",
                          binarize=binarize, max_examples=args.fit_examples)
    latent = LatentGaussian.fit(np.asarray(model.encode(train.images)[0]))
    val_scores = {s: [] for s in names}
    for batch in iterate_examples(run_source, image_shape=shape, value_range=value_range, split="validation",
                                  batch_size=args.batch_size, binarize=binarize):
        for s, v in anomaly_scores(model, batch.images, latent, **kw).items():
            val_scores[s].append(v)
    val_scores = {s: np.concatenate(v) for s, v in val_scores.items()}
    thresholds = {s: fit_threshold(v, args.fpr) for s, v in val_scores.items()}

    columns = {s: [] for s in names}
    index, labels, file_names = [], [], []
    for batch in example_batches(args, config, source, binarize=binarize):
        for s, v in anomaly_scores(model, batch.images, latent, **kw).items():
            columns[s].append(v)
        index.append(batch.index)
        if batch.labels is not None:
            labels.append(batch.labels)
        if batch.names is not None:
            file_names.extend(batch.names)
    columns = {s: np.concatenate(v) if v else np.zeros(0) for s, v in columns.items()}
    rows = {"index": np.concatenate(index) if index else np.zeros(0, np.int64)}
    if source.names is not None:
        rows["name"] = file_names
    if source.has_labels:
        rows["label"] = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    rows.update(columns)
    rows["anomalous"] = (columns[score] > thresholds[score]).astype(int)
    out = Path(args.out)
    write_csv(out, rows)

    summary = {
        "run_dir": str(args.run_dir), "data": source.name, "split": args.split, "images": int(len(rows["index"])),
        "score": score, "fpr": args.fpr, "iwae_samples": args.iwae_samples, "elbo_samples": args.elbo_samples,
        "latent_fit_examples": int(len(train.images)), "validation_examples": int(len(val_scores[names[0]])),
        "binarized": bool(binarize),
        "thresholds": thresholds,
        "validation_flag_rate": {s: float(np.mean(v > thresholds[s])) for s, v in val_scores.items()},
        "flag_rate": {s: float(np.mean(columns[s] > thresholds[s])) if len(columns[s]) else 0.0 for s in names},
    }
    if anomalous and source.has_labels and len(rows["label"]):
        truth = np.isin(rows["label"], anomalous)
        if truth.any() and (~truth).any():
            summary["anomalous_labels"] = list(anomalous)
            summary["roc_auc"] = {s: roc_auc(columns[s], truth) for s in names}
    write_json(out.with_suffix(".json"), summary)
    print(f"scored {summary['images']} images of {source.name} ({args.split}): {int(rows['anomalous'].sum())} flagged "
          f"by {score} > {thresholds[score]:.4g} (fpr {args.fpr:g} on {summary['validation_examples']} validation images)")
    if "roc_auc" in summary:
        print("ROC-AUC (labels " + ",".join(map(str, anomalous)) + " anomalous): "
              + ", ".join(f"{s} {v:.3f}" for s, v in summary["roc_auc"].items()))
    print(f"wrote {out} and {out.with_suffix('.json')}")
    return 0
