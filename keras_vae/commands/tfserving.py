"""keras-vae tfserving EXPORT_DIR: write the TF Serving kit (models.config, batching, compose, Kubernetes)."""
from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tfserving", help="write the TF Serving kit (docker-compose, Kubernetes) for an export folder",
        description="Write EXPORT_DIR/tfserving/: models.config, batching_parameters.txt, docker-compose.yml and "
                    "kubernetes.yaml for the official tensorflow/serving image, serving EXPORT_DIR/savedmodel/<name>/. "
                    "The model name comes from EXPORT_DIR/export.json. No TensorFlow is imported.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("export_dir", metavar="EXPORT_DIR", help="folder written by 'keras-vae export'")
    parser.add_argument("--name", default=None, help="model name (default: the one in export.json)")
    parser.add_argument("--out", default=None, metavar="DIR", help="kit folder (default: EXPORT_DIR/tfserving)")
    parser.add_argument("--versions", default="latest", metavar="POLICY",
                        help="versions to serve: 'latest', 'all' or a comma-separated list such as 1,3")
    parser.add_argument("--image", default=None, metavar="TAG",
                        help="Docker image (default: tensorflow/serving matching the exporting TensorFlow)")
    parser.add_argument("--max-batch-size", type=int, default=64, metavar="N", help="server-side batching limit")
    return parser


def _policy(text: str):
    from keras_vae.errors import ConfigError

    if text in ("latest", "all"):
        return text
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--versions must be 'latest', 'all' or integers like 1,3, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from keras_vae.loading import export_info
    from keras_vae.serving.tfserving.kit import write_kit
    from keras_vae.utils.files import resolve_folder

    args.export_dir = resolve_folder(args.export_dir)  # a linked export folder: the one it names now

    options = {"version_policy": _policy(args.versions), "max_batch_size": args.max_batch_size}
    if args.image:
        options["image"] = args.image
    name = args.name
    if name is None:
        info = export_info(args.export_dir)
        name = (info.get("savedmodel") or {}).get("name") or (info.get("model") or {}).get("kind")
        if not name:
            from keras_vae.errors import ArtifactError

            raise ArtifactError(f"{args.export_dir}/export.json names no SavedModel: pass --name")
    written = write_kit(args.export_dir, name, args.out, **options)
    folder = next(iter(written.values())).parent
    print(f"TF Serving kit for model {name!r} in {folder}/: {', '.join(written)}")
    print(f"  cd {folder} && docker compose up -d && curl -s http://localhost:8501/v1/models/{name}")
    return 0
