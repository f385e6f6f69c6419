"""keras-vae sample: samples of the model's latent sampler, from a run folder or an export, as a PNG/JPEG grid
or as the images themselves (``.npz``: uint8 [n, height, width, channels] under ``images``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from keras_vae.choices import SAMPLER_KINDS
from keras_vae.utils.images import ARRAY_SUFFIX
from keras_vae.utils.validation import IMAGE_SUFFIXES, check_output_file, positive_float, seed_type

MAX_SAMPLES = 10_000  # per call: one grid image (more is a memory error, not a picture) or one .npz
OUT_SUFFIXES = (*IMAGE_SUFFIXES, ARRAY_SUFFIX)


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "sample", help="write samples as a PNG grid or as an .npz array",
        description="Decode latents from the run's sampler and write a PNG grid (or, with --out FILE.npz, the "
                    "images themselves: uint8 [n, height, width, channels] under the key 'images'). SOURCE is a run folder (uses "
                    "TensorFlow) or an export folder / its decoder.onnx (the exported sampler.onnx; onnxruntime "
                    "only, TensorFlow is not imported). A run folder's default sampler is the one fitted after "
                    "training that gives held-out codes the highest likelihood (sampler.json): N(0, I), a "
                    "Gaussian or a Gaussian mixture fitted to the training set's posterior; the export carries "
                    "that sampler. The same --seed gives the same latents from a run folder and its export.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("source", metavar="SOURCE", help="run folder, export folder, or path to decoder.onnx")
    parser.add_argument("--n", type=int, default=64, help=f"number of samples (1 .. {MAX_SAMPLES})")
    parser.add_argument("--seed", type=seed_type, default=0, help="seed of the latents (an integer in [0, 2^32))")
    parser.add_argument("--temperature", type=positive_float, default=1.0,
                        help="scale of the noise around the sampler's mean(s): z = m_k + temperature L_k eps (finite, > 0)")
    parser.add_argument("--sampler", choices=SAMPLER_KINDS, default=None,
                        help="latent sampler of a run folder (default: the run's best by held-out likelihood); "
                             "an export carries one sampler: only 'prior' or its own kind")
    parser.add_argument("--class", dest="label", type=int, default=None, metavar="K",
                        help="sample class K. An unconditional run decodes from class K's own latent sampler, fitted "
                             "on the codes of its training images of class K (once, on first use, into "
                             "samplers/classes.json; the run's data must have labels). A class-conditional run "
                             "(keras-vae train --conditional) decodes p(x|z, y=K) with z from class K's sampler when "
                             "the run has class samplers, else from N(0, I) (its default without --class: the "
                             "classes in turn, 0, 1, ..., K-1, 0, ..., each from its class sampler when the run has "
                             "them)")
    parser.add_argument("--out", default="samples.png", metavar="FILE",
                        help="file to write, by extension: .png (grid), .jpg/.jpeg (JPEG grid), or .npz (the images as "
                             "uint8 [n, height, width, channels] under 'images', with 'seed', 'temperature' "
                             "and 'sampler')")
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
    from keras_vae.utils.files import resolve_folder

    check_output_file(args.out, suffixes=OUT_SUFFIXES)
    source = Path(args.source)  # a folder (runs/latest) resolved once; a file's folder likewise
    source = resolve_folder(source) if source.is_dir() else resolve_folder(source.parent) / source.name
    if not source.exists():
        from keras_vae.errors import ArtifactError

        raise ArtifactError(f"{str(args.source)!r} does not exist: pass a run folder (keras-vae train), an export "
                            "folder (keras-vae export) or an export's decoder.onnx")
    is_export = source.is_dir() and not (source / "model.keras").exists() and (source / "decoder.onnx").is_file()
    from keras_vae.utils.images import save_grid, save_images_npz

    def save(images, sampler_kind: str) -> None:
        if Path(args.out).suffix.lower() == ARRAY_SUFFIX:
            save_images_npz(images, args.out, seed=args.seed, temperature=args.temperature, sampler=sampler_kind)
        else:
            save_grid(images, args.out)

    if source.suffix == ".onnx" or is_export:
        from keras_vae.serving.onnx_decoder import OnnxDecoder

        decoder = OnnxDecoder(source, sampler=False if args.sampler == "prior" else None, verify=not args.no_verify)
        classes = decoder.num_classes
        if args.label is not None and not classes:
            raise ConfigError(f"--class {args.label}: {str(args.source)!r} is the export of an unconditional model, "
                              "which takes no class: sample its run folder instead (class K's own sampler)")
        if classes and (args.label is None or not 0 <= args.label < classes):
            raise ConfigError(f"{str(args.source)!r} is a class-conditional export ({classes} classes): pass --class K "
                              f"with K in [0, {classes})" + ("" if args.label is None else f", got {args.label}"))
        if args.sampler not in (None, "prior") and decoder.sampler_kind != args.sampler:
            raise ConfigError(f"--sampler {args.sampler}: this export carries a {decoder.sampler_kind!r} sampler; "
                              f"use --sampler prior, or export that candidate of the run: "
                              f"keras-vae export RUN --out DIR --sampler {args.sampler}")
        save(decoder.sample(args.n, seed=args.seed, temperature=args.temperature, output="uint8", label=args.label),
             decoder.sampler_kind if args.label is None else f"class-{args.label}")
    else:
        from keras_vae.runs.folder import load_run, load_run_config
        from keras_vae.sampling.draw import draw_samples

        if args.sampler not in (None, "prior") and load_run_config(source).model.num_classes > 0:
            raise ConfigError(f"--sampler {args.sampler}: {str(args.source)!r} is a class-conditional run, which fits "
                              "no label-free latent samplers (its codes are modelled per class): use --class K "
                              "(class K's sampler) or --sampler prior")
        _, model = load_run(source, sampler=args.sampler)  # the model's sampler: the run's or --sampler's
        latent_sampler = getattr(model, "latent_sampler", None)
        labels, class_sampler, kind = None, None, latent_sampler.kind if latent_sampler is not None else "prior"
        if args.label is not None:
            class_sampler, kind, labels = _class_sampling(source, model, args)
        elif _cycles_class_samplers(source, model, args):
            save(_cycled_class_samples(source, model, args), "class-samplers")
            print(f"wrote {args.n} samples to {args.out}")
            return 0
        save(draw_samples(model, args.n, seed=args.seed, temperature=args.temperature, labels=labels,  # the ONNX path's latents
                          latent_sampler=class_sampler), kind)  # None: the model's own sampler
    print(f"wrote {args.n} samples to {args.out}")
    return 0


def _cycles_class_samplers(run_dir: Path, model, args: argparse.Namespace) -> bool:
    """Without --class, a class-conditional run that has class samplers draws the classes in turn from them
    (``--sampler prior`` keeps N(0, I))."""
    from keras_vae.sampling.classes import has_class_samplers

    return getattr(model, "conditional", False) and args.sampler != "prior" and has_class_samplers(run_dir)


def _cycled_class_samples(run_dir: Path, model, args: argparse.Namespace):
    """Sample i is of class i mod K, from class (i mod K)'s sampler (N(0, I) for a class the file does not
    cover, as in the run's export): class c's m images are those that ``--class c --n m`` gives for the same
    seed and temperature."""
    import numpy as np

    from keras_vae.sampling.classes import load_class_samplers
    from keras_vae.sampling.draw import draw_samples
    from keras_vae.sampling.samplers import prior_sampler

    samplers = load_class_samplers(run_dir, model.latent_dim)
    images = None
    for c in range(model.num_classes):
        rows = np.arange(c, args.n, model.num_classes)
        if rows.size == 0:
            continue
        drawn = draw_samples(model, int(rows.size), seed=args.seed, temperature=args.temperature,
                             labels=model.sample_labels(int(rows.size), c),
                             latent_sampler=samplers.get(c) or prior_sampler(model.latent_dim))
        if images is None:
            images = np.empty((args.n, *drawn.shape[1:]), drawn.dtype)
        images[rows] = drawn
    return images


def _class_sampling(run_dir: Path, model, args: argparse.Namespace):
    """(latent sampler or None for the model's own, sampler kind for the .npz, labels or None) of ``--class K``.

    An unconditional run decodes from class K's sampler (``samplers/classes.json``, fitted here on first use);
    a conditional run decodes p(x|z, y=K) with z from class K's sampler when the run has class samplers, else
    from N(0, I) (``--sampler prior`` forces N(0, I))."""
    from keras_vae.errors import ConfigError
    from keras_vae.sampling.classes import CLASSES_FILE, has_class_samplers, load_class_sampler

    conditional = getattr(model, "conditional", False)
    if conditional:
        if not 0 <= args.label < model.num_classes:
            raise ConfigError(f"--class must be in [0, {model.num_classes}) (the run's classes), got {args.label}")
        labels = model.sample_labels(args.n, args.label)
        if args.sampler == "prior" or not has_class_samplers(run_dir):
            return None, "prior", labels
        return load_class_sampler(run_dir, args.label, model.latent_dim), f"class-{args.label}", labels
    if args.sampler is not None:
        raise ConfigError(f"--class {args.label} decodes from the class's own sampler ({CLASSES_FILE}): "
                          f"drop --sampler {args.sampler}")
    if args.label < 0:
        raise ConfigError(f"--class must be a class label >= 0, got {args.label}")
    if not has_class_samplers(run_dir):
        from keras_vae.training.class_samplers import fit_class_samplers

        print(f"fitting one latent sampler per class on the run's labelled training codes (once; stored in "
              f"{run_dir / CLASSES_FILE}) ...", flush=True)
        fitted = fit_class_samplers(run_dir)
        print(f"fitted {len(fitted)} class samplers: classes {sorted(fitted)}", flush=True)
    return load_class_sampler(run_dir, args.label, model.latent_dim), f"class-{args.label}", None
