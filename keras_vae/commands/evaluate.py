"""keras-vae evaluate: ELBO and IWAE negative log-likelihood of a run on its validation data."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from keras_vae.config import MAX_IWAE_SAMPLES
from keras_vae.validation import bounded_int, check_output_file, seed_type


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate", help="ELBO and IWAE NLL of a trained run on validation data",
        description="Evaluate a run folder on the validation split of its data: ELBO and the importance-"
                    "sampled log-likelihood (IWAE bound with K samples) in nats per example, reconstruction "
                    "error and posterior diagnostics. Prints JSON and writes it to --out.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder written by 'keras-vae train'")
    parser.add_argument("--iwae-samples", type=bounded_int(1, MAX_IWAE_SAMPLES, "--iwae-samples"), default=None,
                        metavar="K",
                        help="importance samples per example (default: the run's iwae_samples)")
    parser.add_argument("--examples", type=int, default=None, metavar="N",
                        help="validation examples to use (default: the run's iwae_examples)")
    parser.add_argument("--seed", type=seed_type, default=0, help="seed of the importance samples")
    parser.add_argument("--out", default=None, metavar="FILE", help="JSON output (default: RUN_DIR/evaluation.json)")
    return parser


def run(args: argparse.Namespace) -> int:
    from keras_vae.errors import ConfigError
    from keras_vae.runs import load_run, write_json

    for name in ("iwae_samples", "examples"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    out = check_output_file(Path(args.out) if args.out else Path(args.run_dir) / "evaluation.json")
    config, model = load_run(args.run_dir)
    from keras_vae.data import make_datasets
    from keras_vae.metrics import likelihood_evaluation, model_diagnostics, reconstruction_error

    data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                         batch_size=config.train.batch_size, seed=config.train.seed)
    from keras_vae.progress import Reporter

    report = Reporter()
    images, _ = data.validation_arrays()
    images = images[: args.examples or config.train.iwae_examples]
    with report.phase(f"reconstruction error and posterior diagnostics ({len(images)} images)", 2) as bar:
        result = {"run_dir": str(args.run_dir), "data": data.description,
                  "reconstruction_mae": reconstruction_error(model, images)}
        bar.update()
        result["diagnostics"] = model_diagnostics(model, images)
        bar.update()
    if hasattr(model, "log_likelihood"):
        k = args.iwae_samples or config.train.iwae_samples
        with report.phase(f"IWAE estimate of log p(x) (K={k}, {len(images)} examples)", len(images)) as bar:
            result["validation"] = likelihood_evaluation(model, images, num_samples=k, seed=args.seed,
                                                         progress=bar.update)
    write_json(out, result)
    summary = {k: v for k, v in result.items() if k != "diagnostics"}
    summary["active_units"] = result["diagnostics"]["active_units"]
    print(json.dumps(summary, indent=2))
    print(f"written to {out}")
    return 0
