"""The ``keras-vae`` command: train, evaluate, sample, export, ablate, serve-demo, tfserving, js, encode, reconstruct,
anomaly, complete, design.

Each subcommand lives in ``keras_vae/commands/<name>.py`` with ``add_parser(subparsers)`` and
``run(args) -> int``. Command modules import TensorFlow lazily inside ``run`` so that
``keras-vae --help`` and ONNX-only paths start fast. User errors (``KerasVAEError``) print one
line on stderr and exit with status 2.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import errno
import importlib
import logging
import os
import sys
from typing import Sequence

from keras_vae import __version__
from keras_vae.errors import KerasVAEError
from keras_vae.utils.validation import one_line

# (subcommand module under keras_vae.commands) in the order `--help` lists them
COMMAND_MODULES = ("train", "evaluate", "sample", "export", "ablate", "serve_demo", "tfserving", "js",
                   "encode", "reconstruct", "anomaly", "complete", "design")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default once: not for required options, flags (store_true / store_false: the
    default is leaving the flag out, so ``--no-attributes`` is not "(default: True)"), None or empty defaults,
    nor when the help text already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (action.required or "default" in text.lower() or default is None or default is False
                or default == [] or default is argparse.SUPPRESS or not action.option_strings
                or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))):
            return text
        return super()._get_help_string(action)


def _use_formatter(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and its subcommand parsers the HelpFormatter."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _use_formatter(sub)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as one line with exit status 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see '{self.prog} --help')\n")


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``parser.parse_args``, except that arguments a subcommand does not know are reported by that
    subcommand (its name and its ``--help``), with the closest option it has for each mistyped one."""
    args, extras = parser.parse_known_args(argv)
    if not extras:
        return args
    sub = parser._subparsers._group_actions[0].choices[args.command]
    options = [o for action in sub._actions for o in action.option_strings if o.startswith("--")]
    hints = []
    for extra in extras:
        if extra.startswith("--"):
            close = difflib.get_close_matches(extra.partition("=")[0], options, n=1, cutoff=0.75)
            hints += close
    hint = f" (did you mean {' or '.join(hints)}?)" if hints else ""
    sub.error(f"unrecognized arguments: {' '.join(extras)}{hint}")
    raise AssertionError("unreachable")  # pragma: no cover - error() exits


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand."""
    parser = _Parser(
        prog="keras-vae",
        description="Train, evaluate, sample and export variational autoencoders (Keras 3).",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"keras-vae {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log output, TensorFlow's start-up lines included (-vv for debug)")
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
    _use_formatter(parser)
    return parser


def _quiet_tensorflow(verbose: int) -> None:
    """Before TensorFlow is imported: without -v, hide its C++ INFO/WARNING logs (errors stay)."""
    if verbose == 0:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG,
        format="%(levelname)s %(name)s: %(message)s",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    parser = build_parser()
    args = _parse(parser, argv)
    _quiet_tensorflow(args.verbose)
    from keras_vae.utils.quiet import StderrFilter

    try:
        with StderrFilter() if args.verbose == 0 else contextlib.nullcontext():
            return int(args.handler(args) or 0)
    except KerasVAEError as exc:
        print(f"keras-vae {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"keras-vae {args.command}: error: out of memory: ask for fewer images or a smaller batch",
              file=sys.stderr)
        return 2
    except OSError as exc:  # a file system refusal (read-only, full disk, /proc) left unchecked upstream
        where = f" {exc.filename!r}" if getattr(exc, "filename", None) else ""
        hint = ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = ("; free space on that disk (or choose another --out) and run the command again"
                    + (": the interrupted run resumes from its last finished epoch" if args.command == "train" else ""))
        print(f"keras-vae {args.command}: error: cannot write or read{where}: "
              f"{one_line(exc.strerror or exc, 300)}{hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        run_folder = getattr(args, "run_folder", None) if args.command == "train" else None
        resume = (f": the same command with --out {run_folder} resumes the run from its last finished epoch"
                  if run_folder is not None and run_folder.is_dir() else "")
        print(f"keras-vae {args.command}: interrupted{resume}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
