"""keras-vae export: a run folder -> SavedModel (TF Serving layout) + ONNX decoder/encoder, parity-checked."""
from __future__ import annotations

import argparse

from keras_vae.choices import SAMPLER_KINDS


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export", help="export a trained model to SavedModel (TF Serving) and ONNX",
        description="Export RUN_DIR/model.keras to EXPORT_DIR/savedmodel/<name>/<version>/ (signatures "
                    "serving_default, decode_uint8, encode, reconstruct; TF Serving warmup requests), "
                    "EXPORT_DIR/decoder.onnx and encoder.onnx, the latent sampler (RUN_DIR/sampler.json, else the prior "
                    "N(0, I)) as EXPORT_DIR/sampler.json and sampler.onnx plus the SavedModel signatures sample and "
                    "sample_uint8 (n, seed -> images), and EXPORT_DIR/export.json. A class-conditional run's "
                    "signatures and ONNX files also take the class as an int32 input 'label' (the sample ones draw "
                    "each class from RUN_DIR/samplers/classes.json, else N(0, I)). Nothing is "
                    "reported as exported until Keras, the reloaded SavedModel and onnxruntime agree "
                    "(max abs difference <= 1e-4 at batch sizes 1, 7 and 64). A new --version goes beside the "
                    "existing ones; decoder.onnx, encoder.onnx and export.json then describe the newest export.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by 'keras-vae train'")
    parser.add_argument("--out", required=True, metavar="EXPORT_DIR", help="export folder")
    parser.add_argument("--version", type=int, default=1, metavar="N",
                        help="SavedModel version folder (an integer >= 1)")
    parser.add_argument("--name", default=None,
                        help="TF Serving model name (default: the model kind, 'vae' or 'vaegan')")
    parser.add_argument("--force", action="store_true", help="replace an existing version of the same name")
    parser.add_argument("--sampler", choices=SAMPLER_KINDS, default=None,
                        help="latent sampler to export (default: the run's sampler.json, else the prior)")
    parser.add_argument("--no-attributes", dest="attributes", action="store_false",
                        help="do not write attributes.json (per-class mean codes of the run's labelled training data, "
                             "for attribute vectors in the explorer and the Node CLI; default: written when the "
                             "run's data has labels)")
    parser.add_argument("--float16", action="store_true",
                        help="also write decoder.float16.onnx (float16 weights, float32 inputs/outputs)")
    parser.add_argument("--quantize", action="store_true",
                        help="also write decoder.int8.onnx (onnxruntime dynamic quantization)")
    return parser


def _fmt_bytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def run(args: argparse.Namespace) -> int:
    from keras_vae.export import export_run  # imports TensorFlow when called
    from keras_vae.export.exporter import check_export, export_steps
    from keras_vae.utils.files import resolve_folder
    from keras_vae.utils.progress import Reporter
    from keras_vae.utils.validation import check_output_dir

    args.run_dir = resolve_folder(args.run_dir)  # runs/latest: the run it names now, for the whole export

    check_output_dir(args.out)  # a file, /proc or a read-only place: one line before any work
    check_export(args.run_dir, args.out, args.version, args.name, args.force, args.sampler)  # before the banner
    # a bar on a terminal, else a line per step with an ETA (SavedModel, ONNX files, parity checks)
    with Reporter().phase(f"exporting {args.run_dir} to {args.out}", export_steps(args.float16, args.quantize),
                          lines=True) as bar:
        report = export_run(args.run_dir, args.out, version=args.version, name=args.name, force=args.force,
                            float16=args.float16, quantize=args.quantize, sampler=args.sampler,
                            attributes=args.attributes, progress=bar.update)
    sm = report["savedmodel"]
    files = report["files"]
    sm_bytes = sum(v["bytes"] for k, v in files.items() if k.startswith(sm["path"]))
    print(f"exported {report['model']['kind']} (latent {report['model']['latent_dim']}, image "
          f"{'x'.join(map(str, report['model']['image_shape']))}) from {report['source']['run_dir']}")
    print(f"  {args.out}/{sm['path']}/  SavedModel, {_fmt_bytes(sm_bytes)}, signatures "
          f"{', '.join(sorted(sm['signatures']))}; warmup records: {sm['warmup'].get('records', 0)}")
    for name in report["onnx"]:
        print(f"  {args.out}/{name}  {_fmt_bytes(files[name]['bytes'])}")
    parity = report["parity"]
    print(f"parity vs Keras (max abs diff, batch sizes {', '.join(map(str, parity['batch_sizes']))}; bounds from "
          f"{parity['arithmetic']['keras']} round-off of each network):")
    for signature, entry in parity["signatures"].items():
        onnx = f"  onnxruntime {entry['onnx_max_abs_diff']:.2g}" if "onnx_max_abs_diff" in entry else ""
        unit = " grey levels" if entry["units"] == "grey levels" else ""
        print(f"  {signature:16s} SavedModel {entry['savedmodel_max_abs_diff']:.2g}{unit}{onnx}"
              f"  (bound {entry['tolerance']:.2g}, at most {max(entry['max_diff_over_bound'].values()):.2g} of it)")
    sampler, check = report["sampler"], parity["sampler"]
    drawn = (f"sampler {sampler['kind']} ({sampler['components']} component(s), from {sampler['source']})"
             if not report.get("conditional") else "class samplers (one per label, below)")
    print(f"  {drawn}: SavedModel sample and {sampler['onnx']} vs the run's sampler, max abs diff of z "
          f"{max(check['max_abs_diff']['savedmodel_z'], check['max_abs_diff']['onnx_z']):.2g} "
          f"(seeds {', '.join(map(str, check['seeds']))})")
    conditional = report.get("conditional")
    if conditional:
        print(f"  class-conditional: {conditional['num_classes']} classes; every signature and ONNX file takes "
              f"{conditional['label_dtype']} '{conditional['label_input']}' in [0, {conditional['num_classes']}); "
              f"class samplers ({args.out}/{conditional['class_samplers_file']}):")
        for label, source in conditional["class_samplers"].items():
            print(f"    class {label}: {source}")
    attributes = report.get("attributes") or {}
    if attributes.get("file"):
        print(f"  {args.out}/{attributes['file']}  mean codes of classes {', '.join(map(str, attributes['classes']))} "
              f"({attributes['fitted_on']['examples']} training images)")
    elif attributes:
        print(f"  no attributes.json: {attributes['reason']}")
    for kind, info in report["variants"].items():
        print(f"  {info['file']}: {_fmt_bytes(info['bytes'])} ({info['bytes'] / info['bytes_float32']:.0%} of "
              f"float32), max abs error vs float32 {info['max_abs_error']:.2g}")
    print(f"report: {args.out}/export.json")
    return 0
