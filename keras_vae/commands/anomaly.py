"""keras-vae anomaly: per-image anomaly scores of a data source, thresholds fitted on validation data."""
from __future__ import annotations

import argparse

from keras_vae.choices import ANOMALY_SCORES
from keras_vae.commands.app_options import add_run_and_data_options


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "anomaly", help="anomaly scores of a data source -> scores.csv",
        description="Score every image of a data source: -ELBO and IWAE NLL (classic VAE; nats), reconstruction "
                    "error (mean squared, [0, 1] pixels), the Mahalanobis distance of the posterior mean to a "
                    "Gaussian fitted to the codes of the run's training split (both models), the complexity-"
                    "corrected NLL (-log2 p(x) minus the bits of x as an 8-bit PNG; classic VAE) and, with "
                    "--background, the likelihood ratio (-log p(x) + log p_background(x), nats). Thresholds are "
                    "fitted at --fpr on a random half of the run's validation split (normal data, held-out "
                    "classes excluded) and the false-positive rate they realise on the other half is reported; "
                    "the CSV's 'anomalous' column applies the one of --score. Writes FILE (one row per image: "
                    "index, name, label when known, every score, anomalous) and FILE with .json (thresholds, "
                    "realised false-positive rates, and ROC-AUC per score when the anomalous labels are known).",
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
    parser.add_argument("--binarize", default=None, action=argparse.BooleanOptionalAction,
                        help="score the images (and the validation images of the thresholds) binarized as the run "
                             "trained, each pixel a seeded Bernoulli draw, or as they are (--no-binarize: grey "
                             "levels; its reconstruction_error leaves out the draws' pixel variance x(1 - x), "
                             "docs/applications.md) (default: the run's data.binarize)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the importance samples, the calibration split and the perturbation")
    group = parser.add_argument_group("likelihood ratio (Ren et al. 2019)")
    group.add_argument("--background", default=None, metavar="BG_RUN",
                       help="run trained on perturbed images of RUN_DIR's data (enables likelihood_ratio)")
    group.add_argument("--train-background", action="store_true",
                       help="first train BG_RUN: RUN_DIR's configuration on its training images with each pixel "
                            "replaced by uniform noise at rate --perturb")
    group.add_argument("--perturb", type=float, default=0.2, metavar="MU",
                       help="perturbation rate of --train-background")
    group.add_argument("--background-epochs", type=int, default=None, metavar="N",
                       help="epochs of --train-background (default: the run's)")
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


def _background(args: argparse.Namespace):
    """The background model of --background, trained first with --train-background."""
    from pathlib import Path

    from keras_vae.errors import ConfigError
    from keras_vae.runs.folder import load_run

    folder = Path(args.background)
    if args.train_background:
        from keras_vae.applications.anomaly import train_background

        if folder.exists() and any(folder.iterdir()):
            raise ConfigError(f"--background {folder} is not empty: drop --train-background to use the run in it, "
                              "or name a new folder")
        print(f"training the background run {folder} (perturbation rate {args.perturb:g})", flush=True)
        train_background(args.run_dir, folder, rate=args.perturb, epochs=args.background_epochs, seed=args.seed)
    elif not folder.is_dir():
        raise ConfigError(f"--background {folder} is not a run folder: train one with --train-background")
    return load_run(folder)[1]


def run(args: argparse.Namespace) -> int:
    from keras_vae.applications.anomaly import (
        available_scores,
        check_fpr,
        default_score,
        score_source,
    )
    from keras_vae.commands.app_options import (
        check_positive,
        example_batches,
        open_run_and_source,
    )
    from keras_vae.errors import ConfigError

    check_fpr(args.fpr)
    check_positive(args, "iwae_samples", "elbo_samples", "fit_examples", "background_epochs")
    if args.train_background and args.background is None:
        raise ConfigError("--train-background needs --background BG_RUN: the folder to train the background run in")
    if args.train_background and not 0.0 < args.perturb < 1.0:
        raise ConfigError(f"--perturb must be in (0, 1), e.g. 0.2, got {args.perturb}")
    config, model, source, _ = open_run_and_source(args)
    background = _background(args) if args.background is not None else None
    names = available_scores(model, background)
    score = args.score or default_score(model)
    if score not in names:
        if score == "likelihood_ratio" and hasattr(model, "log_likelihood"):
            raise ConfigError("--score likelihood_ratio needs --background BG_RUN (add --train-background to "
                              "train one)")
        raise ConfigError(f"--score {score} needs a likelihood, which a {type(model).__name__} does not have: "
                          f"choose {', '.join(names)}")
    anomalous = _labels(args.anomalous_labels, config.data.exclude_labels)
    binarize = config.data.binarize if args.binarize is None else args.binarize
    report = score_source(model, config, source, example_batches(args, config, source, binarize=binarize),
                          score=score, fpr=args.fpr, iwae_samples=args.iwae_samples, elbo_samples=args.elbo_samples,
                          fit_examples=args.fit_examples, batch_size=args.batch_size, seed=args.seed,
                          anomalous_labels=anomalous, background=background, binarize=binarize,
                          extra={"run_dir": str(args.run_dir), "data": source.name, "split": args.split,
                                 **({"background": str(args.background)} if background is not None else {})})
    out, out_json = report.save(args.out)
    summary = report.summary
    print(f"scored {summary['images']} images of {source.name} ({args.split}): {report.flagged} flagged "
          f"by {score} > {report.threshold:.4g} (fitted for fpr {args.fpr:g} on {summary['calibration_examples']} "
          f"validation images; realised fpr on the other {summary['check_examples']}: "
          f"{summary['realised_fpr'][score]:.3f})")
    print("realised fpr per score (thresholds for fpr " + f"{args.fpr:g}): "
          + ", ".join(f"{s} {v:.3f}" for s, v in summary["realised_fpr"].items()))
    if "roc_auc" in summary:
        print("ROC-AUC (labels " + ",".join(map(str, anomalous)) + " anomalous): "
              + ", ".join(f"{s} {v:.3f}" for s, v in summary["roc_auc"].items()))
    print(f"wrote {out} and {out_json}")
    return 0
