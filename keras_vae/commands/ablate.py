"""keras-vae ablate: train the paper's ablation variants with identical budgets and tabulate them."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from keras_vae.utils.validation import bounded_int, check_output_dir, seed_type


def add_parser(subparsers) -> argparse.ArgumentParser:
    from keras_vae.ablation.study import DEFAULT_DRAWS, DEFAULT_SAMPLES, VARIANTS  # no TensorFlow

    parser = subparsers.add_parser(
        "ablate", help="train the ablation variants of the paper's model and write a table",
        description="Train the variants of a vaegan preset with identical steps, batch size, data and seed "
                    "(standard KL; mixture KL; mixture KL + variance regularizer; + PatchGAN; + PatchGAN with "
                    "bn_mode=reference) and write ablation.md and ablation.json (sample Frechet distance and "
                    "precision/recall of each variant's fitted aggregate-posterior sampler and of the prior, "
                    "reconstruction PSNR/SSIM/MAE, active units, posterior variance, aggregate moments), "
                    "ablation.png (every variant's samples) and one run folder per variant.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--preset", default="mnist-28", metavar="NAME", help="a vaegan preset")
    parser.add_argument("--steps", type=int, required=True, metavar="N", help="training steps per variant")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (default: runs/ablate-<timestamp>)")
    parser.add_argument("--seed", type=seed_type, default=None, help="random seed shared by all variants (preset's if not given)")
    parser.add_argument("--batch-size", type=int, default=None, metavar="N", help="examples per batch (preset's if not given)")
    parser.add_argument("--variants", default=None, metavar="A,B",
                        help="comma-separated subset of the variants (all if not given): " + ", ".join(VARIANTS))
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES, metavar="N",
                        help="samples per variant and sampler for FD and precision/recall")
    parser.add_argument("--draws", type=bounded_int(1, 100, "--draws"), default=DEFAULT_DRAWS, metavar="R",
                        help="independent sets of --samples per variant and sampler; sample quality is their mean")
    parser.add_argument("--quiet", action="store_true", help="no Keras progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from keras_vae.config.presets import get_preset
    from keras_vae.errors import ConfigError

    config = get_preset(args.preset)
    if config.model.kind != "vaegan":
        raise ConfigError(f"preset {args.preset!r} is a {config.model.kind!r} model: ablate needs a 'vaegan' preset "
                          "such as 'mnist-28', 'celeba-64' or 'tiny'")
    if args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    if args.batch_size is not None:
        if args.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {args.batch_size}")
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, batch_size=args.batch_size))
    if args.samples < 4:
        raise ConfigError(f"--samples must be >= 4 (precision/recall use 3 nearest neighbours), got {args.samples}")
    names = [name.strip() for name in args.variants.split(",") if name.strip()] if args.variants else None
    from keras_vae.ablation.study import select_variants

    select_variants(names)  # unknown names: one line before anything is created
    out = check_output_dir(Path(args.out) if args.out else Path("runs") / time.strftime("ablate-%Y%m%d-%H%M%S"))
    from keras_vae.ablation.study import diverged, footnotes, markdown_table, run_ablation, where_diverged

    import sys

    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)  # a step bar per variant on a terminal
    rows = run_ablation(config, args.steps, out, seed=args.seed, verbose=verbose, variants=names,
                        num_samples=args.samples, draws=args.draws, announce=lambda line: print(line, flush=True))
    print(markdown_table(rows))
    print(footnotes(rows), end="")
    ran = {name: rows[name] for name in select_variants(names) if name in rows}
    failed = [f"{name} ({where_diverged(row)})" for name, row in ran.items() if diverged(row)]
    if failed:
        print(f"diverged: {'; '.join(failed)}: recorded as diverged rows without numbers")
    if failed and len(failed) == len(ran):
        from keras_vae.training.loop import TrainingDiverged

        raise TrainingDiverged(f"every variant diverged ({'; '.join(failed)}); their rows are in "
                               f"{str(out / 'ablation.md')!r}: try another --seed, fewer --steps or a preset with "
                               "a lower learning rate")
    figure = f"  samples: {out / 'ablation.png'}" if not all(diverged(row) for row in rows.values()) else ""
    print(f"table: {out / 'ablation.md'}  data: {out / 'ablation.json'}{figure}")
    return 0
