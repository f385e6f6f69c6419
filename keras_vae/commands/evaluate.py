"""keras-vae evaluate: sample quality, reconstruction, likelihood and latent health of a run -> evaluation.json/.md."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from keras_vae.choices import SAMPLER_KINDS
from keras_vae.config import MAX_IWAE_SAMPLES
from keras_vae.utils.validation import bounded_int, check_output_file, seed_type


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate", help="sample quality, reconstruction, likelihood and latent health of a run",
        description="Evaluate a run folder on the validation split of its data and write evaluation.json and "
                    "evaluation.md (every number with its definition and sample size): Frechet distance, KID, "
                    "precision/recall and sharpness of samples on the in-house feature network (not Inception "
                    "FID; for data other than 28x28 MNIST a feature network is trained on the run's data once "
                    "and cached in RUN/features/), MSE/MAE/PSNR/SSIM/MS-SSIM of reconstructions on [0, 1], ELBO "
                    "and IWAE NLL (classic VAE), and latent health.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder written by 'keras-vae train'")
    parser.add_argument("--samples", type=int, default=1000, metavar="N", help="samples drawn for sample quality")
    parser.add_argument("--draws", type=bounded_int(1, 100, "--draws"), default=1, metavar="R",
                        help="independent sets of --samples to draw (seeds SEED, SEED+1, ...): sample quality is "
                             "the mean over them, with the Frechet distance's standard deviation; FD of 1000 "
                             "samples varies by a few points between draws, so compare models with R >= 5")
    parser.add_argument("--sampler", default=None, choices=SAMPLER_KINDS,
                        help="latent sampler (default: the run's sampler.json if it has one, else the prior)")
    parser.add_argument("--iwae-samples", type=bounded_int(1, MAX_IWAE_SAMPLES, "--iwae-samples"), default=None,
                        metavar="K",
                        help="importance samples per example for the NLL (default: the run's iwae_samples; "
                             "K = 5000 is the literature's standard)")
    parser.add_argument("--examples", type=int, default=None, metavar="N",
                        help="validation examples for the likelihood (default: the run's iwae_examples)")
    parser.add_argument("--no-likelihood", action="store_true", help="skip the ELBO and IWAE NLL")
    parser.add_argument("--retrain-features", action="store_true",
                        help="train the feature network on the run's training data even if one exists")
    parser.add_argument("--seed", type=seed_type, default=0, help="seed of samples and importance samples")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="JSON output (default: RUN_DIR/evaluation.json); the Markdown report goes beside it")
    return parser


def run(args: argparse.Namespace) -> int:
    from keras_vae.commands.app_options import check_positive
    from keras_vae.utils.files import resolve_folder

    args.run_dir = resolve_folder(args.run_dir)  # runs/latest: the run it names now, report included
    check_positive(args, "iwae_samples", "examples", "samples")
    out = check_output_file(Path(args.out) if args.out else Path(args.run_dir) / "evaluation.json")
    from keras_vae.evaluation.report import evaluate_run, scalars, write_evaluation
    from keras_vae.utils.progress import Reporter

    result = evaluate_run(args.run_dir, num_samples=args.samples, draws=args.draws, sampler=args.sampler,
                          likelihood=not args.no_likelihood, iwae_samples=args.iwae_samples,
                          likelihood_examples=args.examples, retrain_features=args.retrain_features, seed=args.seed,
                          report=Reporter())
    out, markdown = write_evaluation(result, out, title=f"Evaluation of {args.run_dir}")
    print(json.dumps(scalars(result), indent=2))
    print(f"written to {out} and {markdown}")
    return 0
