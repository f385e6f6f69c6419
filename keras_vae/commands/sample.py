"""keras-vae sample: a PNG grid of samples from the prior, from a run folder or an ONNX decoder."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sample", help="write a grid of prior samples to a PNG",
        description="Decode z ~ N(0, temperature^2 I) and write a PNG grid. SOURCE is a run folder (uses "
                    "TensorFlow), an export folder or its decoder.onnx (onnxruntime only; TensorFlow is not "
                    "imported).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("source", metavar="SOURCE", help="run folder (e.g. runs/latest), export folder or decoder.onnx")
    parser.add_argument("--n", type=int, default=64, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents")
    parser.add_argument("--temperature", type=float, default=1.0, help="scale of the prior's standard deviation")
    parser.add_argument("--out", default="samples.png", metavar="FILE", help="PNG to write")
    return parser


def run(args: argparse.Namespace) -> int:
    from keras_vae.errors import ConfigError

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    if args.temperature <= 0:
        raise ConfigError(f"--temperature must be > 0, got {args.temperature}")
    source = Path(args.source)
    is_export = source.is_dir() and not (source / "model.keras").exists() and (source / "decoder.onnx").is_file()
    if source.suffix == ".onnx" or is_export:
        from serving.onnx_decoder import sample_grid

        sample_grid(source, n=args.n, seed=args.seed, out_png=args.out, temperature=args.temperature)
    else:
        import numpy as np

        from keras_vae.runs import load_run
        from serving.images import save_grid

        _, model = load_run(source)
        images = np.asarray(model.to_unit(model.sample(args.n, seed=args.seed, temperature=args.temperature)))
        save_grid(images, args.out)  # the same grid as the ONNX path
    print(f"wrote {args.n} samples to {args.out}")
    return 0
