"""keras-vae sample: a PNG grid of samples from the prior, from a run folder or an ONNX decoder."""
from __future__ import annotations

import argparse
from pathlib import Path

from keras_vae.validation import IMAGE_SUFFIXES, check_output_file, positive_float, seed_type

MAX_SAMPLES = 10_000  # one grid image; more is a memory error, not a picture
DECODE_BATCH = 256


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sample", help="write a grid of prior samples to a PNG",
        description="Decode z ~ N(0, temperature^2 I) and write a PNG grid. SOURCE is a run folder (uses "
                    "TensorFlow) or an exported decoder.onnx (onnxruntime only; TensorFlow is not imported).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("source", metavar="SOURCE", help="run folder, or path to decoder.onnx")
    parser.add_argument("--n", type=int, default=64, help=f"number of samples (1 .. {MAX_SAMPLES})")
    parser.add_argument("--seed", type=seed_type, default=0, help="seed of the latents")
    parser.add_argument("--temperature", type=positive_float, default=1.0,
                        help="scale of the prior's standard deviation (finite, > 0)")
    parser.add_argument("--out", default="samples.png", metavar="FILE",
                        help="image to write: .png, or .jpg/.jpeg for JPEG (by extension)")
    parser.add_argument("--no-verify", action="store_true",
                        help="accept a decoder.onnx without export.json beside it (its SHA-256 is not checked)")
    return parser


def run(args: argparse.Namespace) -> int:
    import math

    from keras_vae.errors import ConfigError

    if not 1 <= args.n <= MAX_SAMPLES:
        raise ConfigError(f"--n must be >= 1 and <= {MAX_SAMPLES} (one grid image), got {args.n}"
                          if args.n >= 1 else f"--n must be >= 1, got {args.n}")
    if not (math.isfinite(args.temperature) and args.temperature > 0):
        raise ConfigError(f"--temperature must be a finite number > 0, got {args.temperature}")
    check_output_file(args.out, suffixes=IMAGE_SUFFIXES)
    source = Path(args.source)
    if source.suffix == ".onnx":
        from serving.onnx_decoder import sample_grid

        sample_grid(source, n=args.n, seed=args.seed, out_png=args.out, temperature=args.temperature,
                    verify=not args.no_verify)
    else:
        import numpy as np

        from keras_vae.runs import load_run
        from serving.images import save_grid

        _, model = load_run(source)
        z = model.sample_latents(args.n, seed=args.seed, temperature=args.temperature)  # the same as model.sample
        images = np.concatenate([np.asarray(model.to_unit(model.decode(z[i:i + DECODE_BATCH])))
                                 for i in range(0, args.n, DECODE_BATCH)])
        save_grid(images, args.out)  # the same grid as the ONNX path
    print(f"wrote {args.n} samples to {args.out}")
    return 0
