"""keras-vae complete: fill masked pixels of a data source (inpainting) and compare with baselines."""
from __future__ import annotations

import argparse

from keras_vae.choices import COMPLETION_METHODS
from keras_vae.commands.app_options import add_run_and_data_options


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "complete", help="fill masked pixels of a data source (inpainting) -> DIR",
        description="Hide pixels of every image (--mask center: the central square of half the side; left: the left "
                    "half; random:P: each pixel with probability P) and fill them with the model, by iterated "
                    "conditional re-encoding and by MAP latent optimisation, and with two baselines: the mean "
                    "training image and the nearest training image on the observed pixels. Reports PSNR on the "
                    "masked region ([0, 1] scale, mean over images). Writes DIR/report.json, DIR/completed.npz "
                    "(uint8 images per method, mask, index, names) and DIR/completions.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_and_data_options(parser, split_default="validation")
    parser.add_argument("--mask", default="center", metavar="KIND", help="center, left or random:P")
    parser.add_argument("--method", default="both", choices=[*COMPLETION_METHODS, "both"],
                        help="model-based completion(s) to run (the baselines always run)")
    parser.add_argument("--steps", type=int, default=30, metavar="T", help="re-encoding iterations")
    parser.add_argument("--latent-steps", type=int, default=200, metavar="T", help="Adam steps on z")
    parser.add_argument("--latent-lr", type=float, default=0.05, metavar="LR", help="Adam learning rate on z")
    parser.add_argument("--reference-examples", type=int, default=5000, metavar="N",
                        help="training images for the mean image and the nearest-neighbour baseline")
    parser.add_argument("--seed", type=int, default=0, help="seed of random masks")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    return parser


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from keras_vae.applications.completion import complete_examples, load_reference, parse_mask
    from keras_vae.commands.app_options import all_examples, check_positive, open_run_and_source
    from keras_vae.errors import ConfigError

    parse_mask(args.mask)
    check_positive(args, "steps", "latent_steps", "reference_examples")
    if not args.latent_lr > 0:
        raise ConfigError(f"--latent-lr must be > 0, got {args.latent_lr}")
    config, model, source, _ = open_run_and_source(args)
    reference = load_reference(model, config, args.reference_examples)
    examples = all_examples(args, config, source)
    if not len(examples.index):
        raise ConfigError(f"{source.name} has no images in split {args.split!r}: choose another --split or --data")
    methods = COMPLETION_METHODS if args.method == "both" else (args.method,)
    result = complete_examples(model, examples, reference, args.mask, methods=methods, steps=args.steps,
                               latent_steps=args.latent_steps, learning_rate=args.latent_lr, seed=args.seed)
    out = Path(args.out)
    result.save(out, extra={"run_dir": str(args.run_dir), "data": source.name, "split": args.split,
                            "reference_examples": int(len(reference)), "steps": args.steps,
                            "latent_steps": args.latent_steps, "latent_lr": args.latent_lr, "seed": args.seed})
    print(f"completed {len(result.images)} images of {source.name} ({args.split}), mask {args.mask} "
          f"({result.missing_fraction:.0%} of pixels missing); PSNR on the masked region (dB, mean ± s.e.):")
    for method, (mean, stderr) in result.summary().items():
        print(f"  {method:10s} {mean:6.2f} ± {stderr:.2f}")
    print(f"wrote {out / 'report.json'}, {out / 'completed.npz'} and {out / 'completions.png'}")
    return 0
