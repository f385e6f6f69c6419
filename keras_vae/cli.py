"""The ``keras-vae`` command: train, evaluate, sample, export, ablate, serve-demo, encode, reconstruct, anomaly, complete.

Each subcommand lives in ``keras_vae/commands/<name>.py`` with ``add_parser(subparsers)`` and
``run(args) -> int``. Command modules import TensorFlow lazily inside ``run`` so that
``keras-vae --help`` and ONNX-only paths start fast. User errors (``KerasVAEError``) print one
line on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Sequence

from keras_vae import __version__
from keras_vae.errors import KerasVAEError

# (subcommand module under keras_vae.commands) in the order `--help` lists them
COMMAND_MODULES = ("train", "evaluate", "sample", "export", "ablate", "serve_demo",
                   "encode", "reconstruct", "anomaly", "complete")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit status 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"keras-vae: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand."""
    parser = _Parser(
        prog="keras-vae",
        description="Train, evaluate, sample and export variational autoencoders (Keras 3).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"keras-vae {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subparsers.required = True
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"keras_vae.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"keras_vae.commands.{name}":
                continue  # subcommand not part of this build
            raise
        sub = module.add_parser(subparsers)
        sub.set_defaults(handler=module.run)
    return parser


def _quiet_tensorflow(verbose: int) -> None:
    if verbose < 2:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_tensorflow(args.verbose)
    try:
        return int(args.handler(args) or 0)
    except KerasVAEError as exc:
        print(f"keras-vae {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("keras-vae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
