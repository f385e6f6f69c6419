"""The export pipeline: run folder -> EXPORT_DIR (SavedModel in TF Serving layout, ONNX, export.json).

    EXPORT_DIR/savedmodel/<name>/<version>/   saved_model.pb, variables/, assets.extra/ (warmup)
    EXPORT_DIR/decoder.onnx, encoder.onnx     [+ decoder.float16.onnx, decoder.int8.onnx]
    EXPORT_DIR/export.json                    what was exported, signatures, shapes, parity, sizes

Everything is built in a temporary folder inside EXPORT_DIR and verified there (SavedModel
reloaded, warmup replayed, every ONNX file loaded in onnxruntime, parity); only then is each
piece moved into place with a rename, export.json last. An existing version is replaced only with
``force``. A new version may be added beside others: the ONNX files and export.json then
describe the newest export.
"""
from __future__ import annotations

import datetime
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from export import contract
from keras_vae.errors import ArtifactError, ConfigError
from keras_vae.runs import MODEL_FILE, file_sha256, load_model, load_run_config, write_json

log = logging.getLogger(__name__)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
VARIANT_FILES = (contract.DECODER_FLOAT16_ONNX, contract.DECODER_QUANTIZED_ONNX)
WARMUP_BATCH_SIZES = (1, 8)


def _check_version(version) -> int:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer, str)):
        raise ConfigError(f"--version must be a positive integer, got {version!r}")
    try:
        value = int(version)
    except ValueError:
        raise ConfigError(f"--version must be a positive integer, got {version!r}") from None
    if value < 1 or str(value) != str(version).strip():
        raise ConfigError(f"--version must be a positive integer (TF Serving version folder), got {version!r}")
    return value


def _check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ConfigError(f"--name {name!r} is not a valid model name: use letters, digits, '_', '.' or '-'")
    return name


def _check_out_dir(out_dir: Path, version_dir: Path, force: bool) -> None:
    """Refuse to overwrite a version, or to write into a folder that is not an export, without force."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ArtifactError(f"export folder {str(out_dir)!r} is a file: pass a folder to --out")
    if force:
        return
    if version_dir.exists():
        raise ArtifactError(
            f"{str(version_dir)!r} already exists: pass a new --version, or --force to replace it")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not ((out_dir / contract.EXPORT_JSON).is_file() or (out_dir / contract.SAVEDMODEL_DIR).is_dir()):
            raise ArtifactError(
                f"export folder {str(out_dir)!r} exists and is not a keras-vae export: choose a new or empty "
                "folder, or pass --force to write into it")


def _file_entries(root: Path, paths) -> dict[str, dict[str, Any]]:
    return {str(p.relative_to(root)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
            for p in sorted(paths) if p.is_file()}


def _replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst``, replacing an existing ``dst`` (rename aside, rename in, delete)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.replace(dst, old / dst.name)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_export(model, work: Path, name: str, version: int, source_run: str, source_sha256: str,
                 float16: bool = False, quantize: bool = False, functions=None) -> dict[str, Any]:
    """Write and verify every artifact under ``work`` (a fresh folder); returns the report without files."""
    import tensorflow as tf

    from export import onnx_export, onnx_optimize, quantize as quant
    from export.parity import check_parity, random_inputs
    from export.savedmodel import call_signature, describe_signatures, write_savedmodel
    from export.signatures import make_functions
    from export.warmup import read_warmup_requests, serving_api_available, write_warmup_requests

    functions = functions or make_functions(model)
    rel_version = Path(contract.SAVEDMODEL_DIR) / name / str(version)
    version_dir = work / rel_version
    version_dir.parent.mkdir(parents=True)
    write_savedmodel(model, version_dir, functions)

    # warmup records: each signature at a few batch sizes
    warmup: dict[str, Any]
    reason = serving_api_available()
    if reason is None:
        requests = []
        for batch in WARMUP_BATCH_SIZES:
            inputs = random_inputs(model, batch, seed=1000 + batch)
            for signature, (_, spec) in functions.items():
                requests.append((signature, {spec.name: inputs[spec.name]}))
        path, count = write_warmup_requests(version_dir, name, requests)
        warmup = {"file": str(rel_version / contract.WARMUP_FILE), "records": count,
                  "batch_sizes": list(WARMUP_BATCH_SIZES)}
    else:
        log.warning("no TF Serving warmup file: %s", reason)
        warmup = {"file": None, "reason": reason}

    # ONNX encoder and decoder from the same tf.functions, plain TF ops only
    meta = {role: onnx_export.model_metadata(model, role, source_run, source_sha256)
            for role in ("decoder", "encoder")}
    decode_fn, decode_spec = functions["serving_default"]
    encode_fn, encode_spec = functions["encode"]
    onnx_export.convert_function(decode_fn, decode_spec, meta["decoder"], work / contract.DECODER_ONNX)
    decoder_graph = onnx_optimize.optimize_file(work / contract.DECODER_ONNX)  # same function, faster (parity below)
    onnx_export.convert_function(encode_fn, encode_spec, meta["encoder"], work / contract.ENCODER_ONNX)
    sessions = {f: onnx_export.load_session(work / f) for f in (contract.DECODER_ONNX, contract.ENCODER_ONNX)}

    # verify: reload the SavedModel, replay the warmup requests, parity against Keras
    loaded = tf.saved_model.load(str(version_dir))
    signatures = describe_signatures(loaded)
    missing = sorted(set(contract.SIGNATURES) - set(signatures))
    if missing:
        raise ArtifactError(f"the SavedModel lacks signatures {missing}")
    if warmup["file"]:
        for _, signature, inputs in read_warmup_requests(version_dir / contract.WARMUP_FILE):
            call_signature(loaded, signature, inputs)
    parity = check_parity(model, loaded, sessions)

    variants: dict[str, Any] = {}
    if float16:
        quant.to_float16(work / contract.DECODER_ONNX, work / contract.DECODER_FLOAT16_ONNX,
                         {**meta["decoder"], contract.META_PRECISION: "float16"})
        variants["float16"] = {"file": contract.DECODER_FLOAT16_ONNX, **quant.measure_error(
            work / contract.DECODER_ONNX, work / contract.DECODER_FLOAT16_ONNX, model.latent_dim)}
    if quantize:
        quant.quantize_dynamic(work / contract.DECODER_ONNX, work / contract.DECODER_QUANTIZED_ONNX,
                               {**meta["decoder"], contract.META_PRECISION: "int8-dynamic"})
        variants["quantized"] = {"file": contract.DECODER_QUANTIZED_ONNX, "method": "onnxruntime dynamic, int8 weights",
                                 **quant.measure_error(work / contract.DECODER_ONNX,
                                                       work / contract.DECODER_QUANTIZED_ONNX, model.latent_dim)}
    if variants:
        for info in variants.values():
            info["reference"] = contract.DECODER_ONNX
            info["bytes_float32"] = (work / contract.DECODER_ONNX).stat().st_size

    onnx_files = {contract.DECODER_ONNX: "decoder", contract.ENCODER_ONNX: "encoder",
                  **{v["file"]: "decoder" for v in variants.values()}}
    return {
        "savedmodel": {"path": str(rel_version), "name": name, "version": version,
                       "signatures": signatures, "warmup": warmup},
        "onnx": {f: {"role": role, **onnx_export.describe_onnx(work / f)} for f, role in onnx_files.items()},
        "variants": variants,
        "parity": parity,
        "decoder_graph": decoder_graph,
    }


def export_run(run_dir, out_dir, version: int = 1, name: str | None = None, force: bool = False,
               float16: bool = False, quantize: bool = False) -> dict[str, Any]:
    """Export the model of ``run_dir`` into ``out_dir``; returns the report written to export.json."""
    from keras_vae import __version__

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    version = _check_version(version)
    config = load_run_config(run_dir)  # checks the run folder, model.keras presence and config.json
    name = _check_name(name or config.model.kind)
    rel_version = Path(contract.SAVEDMODEL_DIR) / name / str(version)
    _check_out_dir(out_dir, out_dir / rel_version, force)

    model_path = run_dir / MODEL_FILE
    source_sha256 = file_sha256(model_path)
    model = load_model(model_path)
    if model.model_config.kind != config.model.kind:
        raise ArtifactError(f"{str(model_path)!r} holds a {model.model_config.kind!r} model but config.json "
                            f"says {config.model.kind!r}: the run folder is inconsistent")
    source_run = str(run_dir.resolve())

    created_out = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-tmp-", dir=out_dir))
    try:
        built = build_export(model, work, name, version, source_run, source_sha256,
                             float16=float16, quantize=quantize)
        files = _file_entries(work, [work / f for f in built["onnx"]])
        files.update(_file_entries(work, (work / rel_version).rglob("*")))
        report = {
            "format": "keras-vae-export",
            "format_version": 1,
            "package_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "source": {"run_dir": source_run, "model_file": MODEL_FILE, "model_sha256": source_sha256,
                       "preset": config.preset},
            "model": {"kind": model.model_config.kind, "latent_dim": int(model.latent_dim),
                      "image_shape": [int(s) for s in model.image_shape],
                      "value_range": [0, 1], "internal_value_range": list(model.value_range)},
            **built,
            "files": files,
        }
        # place: version folder, ONNX files, stale variants removed, export.json last
        _replace_dir(work / rel_version, out_dir / rel_version)
        for f in built["onnx"]:
            os.replace(work / f, out_dir / f)
        for f in VARIANT_FILES:
            if f not in built["onnx"] and (out_dir / f).exists():
                (out_dir / f).unlink()
        write_json(out_dir / contract.EXPORT_JSON, report)
        os.chmod(out_dir / contract.EXPORT_JSON, 0o644)  # mkstemp makes 0600; servers read it as others
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if created_out and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    shutil.rmtree(work, ignore_errors=True)
    return report
