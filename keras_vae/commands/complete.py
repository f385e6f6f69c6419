"""keras-vae complete: fill masked pixels of a data source (inpainting) and compare with baselines."""
from __future__ import annotations

import argparse

from keras_vae.choices import COMPLETION_METHODS, SAMPLING_COMPLETION_METHODS

from keras_vae.applications.completion import MWG_STARTS

MWG_DEFAULTS = {"steps": 100, "chains": None, "start": "importance"}
from keras_vae.commands.app_options import add_run_and_data_options


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "complete", help="fill masked pixels of a data source (inpainting) -> DIR",
        description="Hide pixels of every image (--mask center: the central square of half the side; left: the left "
                    "half; random:P: each pixel with probability P) and fill them with the model (iterative: "
                    "iterated conditional re-encoding; latent: MAP latent optimisation; metropolis: "
                    "Metropolis-within-Gibbs sampling of the conditional; importance: self-normalised importance "
                    "sampling; the last two need the decoder's density, so a classic VAE) and with two baselines: "
                    "the mean training image and the nearest training image on the observed pixels. Reports PSNR on "
                    "the masked region ([0, 1] scale, mean over images; a sampling method's point estimate is the "
                    "per-pixel mean of its K completions), for the sampling methods also the mean PSNR of one "
                    "completion and the best of their K completions, and for every method the coverage of 90%% "
                    "intervals and the Brier score on the binarised hidden pixels (a sampling method's predictive "
                    "probability: the Bernoulli mixture over its latent draws). "
                    "Writes DIR/report.json, DIR/completed.npz (uint8 images per method, "
                    "K completions and per-pixel spread per sampling method, mask, index, names) and "
                    "DIR/completions.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_and_data_options(parser, split_default="validation")
    parser.add_argument("--mask", default="center", metavar="KIND", help="center, left or random:P")
    parser.add_argument("--method", nargs="+", default=["both"], choices=[*COMPLETION_METHODS, "both", "all"],
                        help="model-based completion(s) to run (the baselines always run); both: iterative and "
                             "latent; all: every method the model supports")
    parser.add_argument("--steps", type=int, default=30, metavar="T", help="re-encoding iterations")
    parser.add_argument("--latent-steps", type=int, default=200, metavar="T", help="Adam steps on z")
    parser.add_argument("--latent-lr", type=float, default=0.05, metavar="LR", help="Adam learning rate on z")
    parser.add_argument("--completions", type=int, default=10, metavar="K",
                        help="completions drawn per image by the sampling methods (metropolis, importance)")
    parser.add_argument("--mwg-steps", type=int, default=MWG_DEFAULTS["steps"], metavar="T",
                        help="Metropolis-within-Gibbs chain length (steps per chain)")
    parser.add_argument("--mwg-chains", type=int, default=MWG_DEFAULTS["chains"], metavar="C",
                        help="Metropolis-within-Gibbs chains per image (dividing --completions; K / C completions "
                             "per chain, the last state among them; default: K with --mwg-start importance, else 1)")
    parser.add_argument("--mwg-start", default=MWG_DEFAULTS["start"], choices=MWG_STARTS,
                        help="chain start: importance: latents resampled by importance sampling "
                             "(--importance-samples draws); encoder: z_0 = the encoder's mean of the MAP completion "
                             "(the paper's start; one chain)")
    parser.add_argument("--burn-in", type=int, default=None, metavar="T",
                        help="chain states discarded before averaging (default: half of --mwg-steps)")
    parser.add_argument("--importance-samples", type=int, default=1000, metavar="S",
                        help="latent draws of importance sampling (and of the chains' starts)")
    parser.add_argument("--reference-examples", type=int, default=5000, metavar="N",
                        help="training images for the mean image and the nearest-neighbour baseline")
    parser.add_argument("--seed", type=int, default=0, help="seed of random masks and of the sampling methods")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from keras_vae.applications.completion import (complete_examples, default_mwg_chains, load_reference,
                                                   parse_mask)
    from keras_vae.commands.app_options import all_examples, check_positive, open_run_and_source
    from keras_vae.errors import ConfigError

    parse_mask(args.mask)
    check_positive(args, "steps", "latent_steps", "reference_examples", "completions", "mwg_steps", "mwg_chains",
                   "importance_samples")
    if not args.latent_lr > 0:
        raise ConfigError(f"--latent-lr must be > 0, got {args.latent_lr}")
    config, model, source, _ = open_run_and_source(args)
    methods = _methods(args.method, model)
    reference = load_reference(model, config, args.reference_examples)
    examples = all_examples(args, config, source)
    if not len(examples.index):
        raise ConfigError(f"{source.name} has no images in split {args.split!r}: choose another --split or --data")
    result = complete_examples(model, examples, reference, args.mask, methods=methods, steps=args.steps,
                               latent_steps=args.latent_steps, learning_rate=args.latent_lr, seed=args.seed,
                               completions=args.completions, mwg_steps=args.mwg_steps, burn_in=args.burn_in,
                               importance_samples=args.importance_samples, mwg_chains=args.mwg_chains,
                               mwg_start=args.mwg_start)
    out = Path(args.out)
    result.save(out, extra={"run_dir": str(args.run_dir), "data": source.name, "split": args.split,
                            "reference_examples": int(len(reference)), "steps": args.steps,
                            "latent_steps": args.latent_steps, "latent_lr": args.latent_lr, "seed": args.seed,
                            "mwg_steps": args.mwg_steps,
                            "mwg_chains": default_mwg_chains(args.completions, args.mwg_chains, args.mwg_start),
                            "mwg_start": args.mwg_start, "burn_in": args.burn_in,
                            "importance_samples": args.importance_samples})
    print(f"completed {len(result.images)} images of {source.name} ({args.split}), mask {args.mask} "
          f"({result.missing_fraction:.0%} of pixels missing); PSNR on the masked region (dB, mean ± s.e.):")
    best, single = result.best_of_k(), result.single_completion()
    calibration = result.calibration(0.9)
    for method, (mean, stderr) in result.summary().items():
        line = f"  {method:10s} {mean:6.2f} ± {stderr:.2f}"
        line += (f"  one completion: {single[method][0]:6.2f}  best of {args.completions}: {best[method][0]:6.2f}"
                 if method in best else " " * 45)
        c = calibration[method]
        print(f"{line}  90% coverage {c['coverage']:.3f}  Brier {c['brier']:.4f}")
    print(f"wrote {out / 'report.json'}, {out / 'completed.npz'} and {out / 'completions.png'}")
    return 0


def _methods(requested: list[str], model) -> tuple[str, ...]:
    """--method values -> methods in COMPLETION_METHODS order ('both': iterative and latent; 'all': every
    method the model supports; a sampling method needs a likelihood, checked by complete_all)."""
    wanted = set(requested)
    if "both" in wanted:
        wanted |= {"iterative", "latent"}
    if "all" in wanted:
        wanted |= {m for m in COMPLETION_METHODS if hasattr(model, "likelihood") or m not in SAMPLING_COMPLETION_METHODS}
    return tuple(m for m in COMPLETION_METHODS if m in wanted)
