"""keras-vae sample: a PNG grid of samples from the prior, from a run folder or an ONNX decoder."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sample", help="write a grid of samples (the model's latent sampler) to a PNG",
        description="Decode samples of the model's latent sampler and write a PNG grid. SOURCE is a run folder "
                    "(its sampler.json, else the prior N(0, I); uses TensorFlow) or an export folder / its "
                    "decoder.onnx (the exported sampler.onnx; onnxruntime only, TensorFlow is not imported). "
                    "The same --seed gives the same latents from a run folder and from its export.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("source", metavar="SOURCE", help="run folder, export folder, or path to decoder.onnx")
    parser.add_argument("--n", type=int, default=64, help="number of samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the latents")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="scale of the sampler's noise: z = m_k + temperature L_k eps")
    parser.add_argument("--out", default="samples.png", metavar="FILE", help="PNG to write")
    return parser


def run(args: argparse.Namespace) -> int:
    from keras_vae.errors import ConfigError

    if args.n < 1:
        raise ConfigError(f"--n must be >= 1, got {args.n}")
    if args.temperature <= 0:
        raise ConfigError(f"--temperature must be > 0, got {args.temperature}")
    source = Path(args.source)
    if source.suffix == ".onnx" or (source / "decoder.onnx").is_file():
        from serving.onnx_decoder import sample_grid

        sample_grid(source, n=args.n, seed=args.seed, out_png=args.out, temperature=args.temperature)
    else:
        import numpy as np

        from keras_vae.runs import load_run
        from serving.images import save_grid

        from keras_vae.noise import portable_noise
        from keras_vae.samplers import SAMPLER_FILE, LatentSampler, prior_sampler

        _, model = load_run(source)
        d = int(model.latent_dim)
        path = source / SAMPLER_FILE
        sampler = LatentSampler.load(path, latent_dim=d) if path.is_file() else prior_sampler(d)
        eps, u = portable_noise(args.seed, args.n, d)  # the noise OnnxDecoder.sample draws
        z = sampler.latents(eps * np.float32(args.temperature), u)
        images = np.asarray(model.to_unit(model.decode(z)))
        save_grid(images, args.out)  # the same grid as the ONNX path
    print(f"wrote {args.n} samples to {args.out}")
    return 0
