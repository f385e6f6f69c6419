"""keras-vae reconstruct: decode(E[z|x]) of every image of a source, with per-image MSE and PSNR."""
from __future__ import annotations

import argparse

from keras_vae.commands.app_options import add_run_and_data_options

PREVIEW = 8  # images in preview.png


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "reconstruct", help="reconstructions of a data source -> DIR",
        description="Reconstruct every image of a data source through the posterior mean. Writes "
                    "DIR/reconstructions.npz ('images' uint8 [N, H, W, C], per-image 'mse' and 'psnr' on [0, 1], "
                    "'index', 'labels'/'names' when known), DIR/preview.png (inputs above reconstructions) and, "
                    "with --png, one PNG per image named after its position and source file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_run_and_data_options(parser)
    parser.add_argument("--png", action="store_true", help="also write one PNG per reconstruction")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    return parser


def run(args: argparse.Namespace) -> int:
    from keras_vae.applications.encoding import reconstruct_examples, save_reconstructions
    from keras_vae.commands.app_options import example_batches, open_run_and_source

    config, model, source, _ = open_run_and_source(args)
    result = reconstruct_examples(model, example_batches(args, config, source), preview=PREVIEW)
    written = save_reconstructions(result, args.out, pngs=args.png)
    print(f"reconstructed {len(result['images'])} images of {source.name} ({args.split}): "
          f"MSE {result['mse'].mean():.5f}, PSNR {result['psnr'].mean():.2f} dB (mean over images, [0, 1] scale); "
          f"wrote {len(written)} files to {args.out}")
    return 0
