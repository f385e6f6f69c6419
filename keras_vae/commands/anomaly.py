"""keras-vae anomaly: per-image anomaly scores of a data source, thresholds fitted on validation data."""
from __future__ import annotations

import argparse

from keras_vae.choices import ANOMALY_SCORES
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
    parser.add_argument("--score", default=None, choices=ANOMALY_SCORES,
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
    from keras_vae.applications.anomaly import available_scores, check_fpr, default_score, score_source
    from keras_vae.commands.app_options import check_positive, example_batches, open_run_and_source
    from keras_vae.errors import ConfigError

    check_fpr(args.fpr)
    check_positive(args, "iwae_samples", "elbo_samples", "fit_examples")
    config, model, source, _ = open_run_and_source(args)
    names = available_scores(model)
    score = args.score or default_score(model)
    if score not in names:
        raise ConfigError(f"--score {score} needs a likelihood, which a {type(model).__name__} does not have: "
                          f"choose {', '.join(names)}")
    anomalous = _labels(args.anomalous_labels, config.data.exclude_labels)
    report = score_source(model, config, source, example_batches(args, config, source, binarize=config.data.binarize),
                          score=score, fpr=args.fpr, iwae_samples=args.iwae_samples, elbo_samples=args.elbo_samples,
                          fit_examples=args.fit_examples, batch_size=args.batch_size, seed=args.seed,
                          anomalous_labels=anomalous,
                          extra={"run_dir": str(args.run_dir), "data": source.name, "split": args.split})
    out, out_json = report.save(args.out)
    summary = report.summary
    print(f"scored {summary['images']} images of {source.name} ({args.split}): {report.flagged} flagged "
          f"by {score} > {report.threshold:.4g} (fpr {args.fpr:g} on {summary['validation_examples']} validation images)")
    if "roc_auc" in summary:
        print("ROC-AUC (labels " + ",".join(map(str, anomalous)) + " anomalous): "
              + ", ".join(f"{s} {v:.3f}" for s, v in summary["roc_auc"].items()))
    print(f"wrote {out} and {out_json}")
    return 0
