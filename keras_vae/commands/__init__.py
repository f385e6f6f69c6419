"""Subcommands of the keras-vae CLI: each module has add_parser(subparsers) and run(args) -> int."""
