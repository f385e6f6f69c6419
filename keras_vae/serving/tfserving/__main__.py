"""``python -m keras_vae.serving.tfserving EXPORT_DIR NAME [--out DIR]``: write the TF Serving kit for an export."""
from __future__ import annotations

import argparse
import sys

from keras_vae.errors import KerasVAEError
from keras_vae.serving.tfserving.kit import write_kit


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m keras_vae.serving.tfserving", description=__doc__)
    p.add_argument("export_dir")
    p.add_argument("name")
    p.add_argument("--out", default=None, help="kit folder (default EXPORT_DIR/tfserving)")
    args = p.parse_args(argv)
    try:
        written = write_kit(args.export_dir, args.name, args.out)
    except KerasVAEError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for path in written.values():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
