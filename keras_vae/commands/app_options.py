"""Options shared by the application subcommands (encode, reconstruct, anomaly, complete): a run folder
and the data to apply it to."""
from __future__ import annotations

import argparse


def add_run_and_data_options(parser: argparse.ArgumentParser, split_default: str = "all") -> None:
    """RUN_DIR, --data SPEC, --data-dir, --split, --max-examples, --batch-size."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder written by 'keras-vae train'")
    group = parser.add_argument_group("data (default: the run's own source)")
    group.add_argument("--data", default=None, metavar="SPEC",
                       help="'embedded', 'tfds:NAME', 'folder:PATH' or 'npy:FILE' (.npy/.npz); images are "
                            "converted to the model's size and channels")
    group.add_argument("--data-dir", default=None, metavar="DIR", help="tensorflow-datasets data_dir")
    group.add_argument("--split", default=split_default, choices=["all", "train", "validation"],
                       help="which examples of the source: both splits, or one (the fixed split of every source)")
    group.add_argument("--max-examples", type=int, default=None, metavar="N",
                       help="read at most N examples (default: all)")
    group.add_argument("--batch-size", type=int, default=256, metavar="N", help="images per batch")


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """ConfigError naming the flag when one of ``names`` is given and < 1."""
    from keras_vae.errors import ConfigError

    for name in names:
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def open_run_and_source(args: argparse.Namespace):
    """(RunConfig, model, Source, DataConfig) for the run folder and the data the flags name."""
    check_positive(args, "max_examples", "batch_size")
    from keras_vae.data import load_source
    from keras_vae.data.examples import with_source
    from keras_vae.runs.folder import load_run

    config, model = load_run(args.run_dir)
    data_config = with_source(config.data, args.data, args.data_dir)
    return config, model, load_source(data_config), data_config


def example_batches(args: argparse.Namespace, config, source, binarize: bool = False):
    """The iterate_examples generator for the flags (split, max examples, batch size)."""
    from keras_vae.data.examples import iterate_examples

    return iterate_examples(source, image_shape=config.model.image_shape, value_range=config.model.value_range,
                            split=args.split, batch_size=args.batch_size, binarize=binarize,
                            max_examples=args.max_examples)
