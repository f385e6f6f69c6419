"""keras-vae encode: posterior means and log-variances of every image of a source, to an .npz."""
from __future__ import annotations

import argparse

from keras_vae.commands.app_options import add_run_and_data_options


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "encode", help="posterior codes of a data source -> codes.npz",
        description="Encode every image of a data source with a trained run: writes an .npz with 'mean' and "
                    "'log_var' [N, latent] (q(z|x) = N(mean, diag(exp(log_var)))), 'index' (position in the "
                    "source: array row or sorted file list), and 'labels' / 'names' (file names) when the source "
                    "has them. Grey-level images are encoded as they are (no binarization) unless --binarize.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_and_data_options(parser)
    parser.add_argument("--binarize", action="store_true",
                        help="binarize images once with the fixed validation seed, as the run's validation data")
    parser.add_argument("--out", default="codes.npz", metavar="FILE", help=".npz to write")
    return parser


def run(args: argparse.Namespace) -> int:
    from keras_vae.applications.encoding import encode_examples, save_codes
    from keras_vae.commands.app_options import example_batches, open_run_and_source

    config, model, source, _ = open_run_and_source(args)
    codes = encode_examples(model, example_batches(args, config, source, binarize=args.binarize))
    save_codes(codes, args.out)
    extra = [k for k, v in (("labels", codes.labels), ("names", codes.names)) if v is not None]
    print(f"encoded {len(codes.index)} images of {source.name} ({args.split}) into {model.latent_dim}-d codes: "
          f"{args.out} (mean, log_var, index{''.join(', ' + k for k in extra)})")
    return 0
