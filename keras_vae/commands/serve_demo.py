"""``keras-vae serve-demo EXPORT_DIR``: serve the browser latent explorer for an exported decoder.onnx.

No TensorFlow: the decoder is checked with onnxruntime (SHA-256 against export.json, metadata,
declared shapes) before the page, the file and onnxruntime-web's dist files are served on HOST:PORT.
"""
from __future__ import annotations

import argparse

from keras_vae.utils.validation import port_type


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``serve-demo`` and return its parser."""
    parser = subparsers.add_parser(
        "serve-demo",
        help="serve the browser latent explorer (onnxruntime-web) for EXPORT_DIR/decoder.onnx",
        description="Serve the latent explorer page, EXPORT_DIR/decoder.onnx and the onnxruntime-web files "
                    "on a local HTTP server. onnxruntime-web comes from the js home (run `keras-vae js install` "
                    "once; `keras-vae js path` prints the folder; $KERAS_VAE_JS_DIR moves it), else from a "
                    "checkout's serving/web/node_modules. Ctrl-C stops it.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("export_dir", metavar="EXPORT_DIR", help="export folder with decoder.onnx (or the file)")
    parser.add_argument("--port", type=port_type, default=8000, help="TCP port, 0 .. 65535 (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind; keep 127.0.0.1 unless you mean it")
    parser.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    parser.add_argument("--no-verify", action="store_true",
                        help="serve a decoder.onnx that has no export.json beside it (its SHA-256 is not checked)")
    return parser


def run(args) -> int:
    """Check the decoder, start the server, open the page, serve until interrupted."""
    import webbrowser

    from pathlib import Path

    from keras_vae.serving.demo import make_server, server_url
    from keras_vae.serving.onnx_decoder import OnnxDecoder
    from keras_vae.utils.files import resolve_folder

    source = Path(args.export_dir)  # a linked export folder: the one it names now, for the whole session
    args.export_dir = resolve_folder(source) if source.is_dir() else resolve_folder(source.parent) / source.name
    decoder = OnnxDecoder(args.export_dir, verify=not args.no_verify)  # fails early on a missing, changed or foreign file
    server = make_server(decoder.path.parent, host=args.host, port=args.port)
    url = server_url(server)
    classes = f", {decoder.num_classes} classes: pick one beside New sample" if decoder.num_classes else ""
    print(f"latent explorer for {decoder.path} (latent {decoder.latent_dim}, image "
          f"{'x'.join(map(str, decoder.image_shape))}{classes}) at {url}  (Ctrl-C stops)", flush=True)
    if not args.no_browser:
        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()
    return 0
