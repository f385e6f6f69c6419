"""Options shared by the application subcommands (encode, reconstruct, anomaly, complete): a run folder
and the data to apply it to (the reading itself is ``keras_vae.applications.inputs``); ``check_positive``
also serves evaluate."""
from __future__ import annotations

import argparse

from keras_vae.choices import DATA_SPLITS


def add_run_and_data_options(parser: argparse.ArgumentParser, split_default: str = "all") -> None:
    """RUN_DIR, --data SPEC, --data-dir, --split, --max-examples, --batch-size."""
    parser.add_argument("run_dir", metavar="RUN_DIR", help="folder written by 'keras-vae train'")
    group = parser.add_argument_group("data (default: the run's own source)")
    group.add_argument("--data", default=None, metavar="SPEC",
                       help="'embedded', 'tfds:NAME', 'folder:PATH' or 'npy:FILE' (.npy/.npz); images are "
                            "converted to the model's size and channels")
    group.add_argument("--data-dir", default=None, metavar="DIR", help="tensorflow-datasets data_dir")
    group.add_argument("--split", default=split_default, choices=list(DATA_SPLITS),
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
    """(RunConfig, model, Source, DataConfig) for RUN_DIR and the data the flags name. ``args.run_dir`` is
    resolved first (runs/latest: the run it names now), so the command's reports name that run."""
    from keras_vae.applications.inputs import open_run_and_source as open_run
    from keras_vae.utils.files import resolve_folder

    args.run_dir = resolve_folder(args.run_dir)
    check_positive(args, "max_examples", "batch_size")
    return open_run(args.run_dir, args.data, args.data_dir)


def example_batches(args: argparse.Namespace, config, source, binarize: bool = False):
    """The batches of ``source`` that --split, --max-examples and --batch-size select."""
    from keras_vae.applications.inputs import source_batches

    return source_batches(config, source, split=args.split, batch_size=args.batch_size,
                          max_examples=args.max_examples, binarize=binarize)


def all_examples(args: argparse.Namespace, config, source):
    """``example_batches`` in one ExampleBatch."""
    from keras_vae.applications.inputs import source_examples

    return source_examples(config, source, split=args.split, batch_size=args.batch_size,
                           max_examples=args.max_examples)
