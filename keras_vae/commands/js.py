"""``keras-vae js install [--dir DIR]`` and ``keras-vae js path``: the npm packages of the JavaScript tools
(the work is done by ``keras_vae.serving.js_packages``).
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``js`` (with ``install`` and ``path``) and return its parser."""
    parser = subparsers.add_parser(
        "js", help="install the npm packages of the Node decoder and the browser explorer (npm ci)",
        description="Manage the JavaScript side: the Node decoder (onnxruntime-node) and the onnxruntime-web files "
                    "that serve-demo serves. They live in the js home, a user-writable folder: $KERAS_VAE_JS_DIR "
                    "when set, else ~/.cache/keras-vae/js/<version>.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    actions = parser.add_subparsers(dest="js_command", metavar="ACTION")
    actions.required = True
    install = actions.add_parser(
        "install", help="copy the Node decoder into the js home and run npm ci there (needs node and npm)",
        description="Copy the Node decoder (decode.js ...) and the lock files of both JavaScript packages into DIR "
                    "and run `npm ci` in DIR/node and DIR/web (onnxruntime-node is installed without its CUDA "
                    "download: ONNXRUNTIME_NODE_INSTALL=skip). Built in a temporary folder beside DIR, then "
                    "renamed into place. npm reads its usual settings (registry, proxy, cache; "
                    "npm_config_offline=true installs from npm's cache alone).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    install.add_argument("--dir", metavar="DIR", default=None,
                         help="install here (default: the js home, $KERAS_VAE_JS_DIR or ~/.cache/keras-vae/js/<version>); "
                              "serve-demo finds another folder only through KERAS_VAE_JS_DIR")
    install.add_argument("--force", action="store_true", help="reinstall even when DIR already holds this version")
    actions.add_parser("path", help="print the js home folder",
                       description="Print the js home (where `js install` installs and serve-demo looks); "
                                   "exit status 1 when nothing is installed there yet.")
    return parser


def run(args) -> int:
    """Dispatch ``js install`` / ``js path``."""
    from keras_vae.serving.assets import js_home
    from keras_vae.serving.js_packages import install, installed

    if args.js_command == "path":
        home = js_home()
        print(home)
        return 0 if installed(home) else 1
    target = Path(args.dir).expanduser().absolute() if args.dir else js_home()
    fresh = install(target, force=args.force, echo=lambda line: print(line, flush=True))
    decoder = shlex.quote(str(target / "node" / "decode.js"))
    print(("installed the JavaScript packages in " if fresh else "already installed (--force reinstalls): ")
          + str(target))
    print(f"  Node decoder:  node {decoder} --model EXPORT_DIR/decoder.onnx --sample 16 --seed 0 --out-dir out/")
    print(f"                 node {decoder} --model EXPORT_DIR/decoder.onnx --latents z.json --out-dir out/")
    if target == js_home():
        print("  browser:       keras-vae serve-demo EXPORT_DIR")
    else:
        print(f"  browser:       KERAS_VAE_JS_DIR={shlex.quote(str(target))} keras-vae serve-demo EXPORT_DIR "
              "(serve-demo looks in the js home, not in --dir)")
    return 0
