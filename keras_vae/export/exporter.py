"""The export pipeline: run folder -> EXPORT_DIR (SavedModel in TF Serving layout, ONNX, export.json).

    EXPORT_DIR/savedmodel/<name>/<version>/   saved_model.pb, variables/, assets.extra/ (warmup)
    EXPORT_DIR/decoder.onnx, encoder.onnx     [+ decoder.float16.onnx, decoder.int8.onnx]
    EXPORT_DIR/sampler.onnx, sampler.json     the latent sampler (the run's sampler.json, else the prior)
    EXPORT_DIR/attributes.json                per-class mean codes, when the run's data has labels (keras_vae.export.attributes)
    EXPORT_DIR/export.json                    what was exported, signatures, shapes, parity, sizes

The SavedModel also gets the ``sample`` / ``sample_uint8`` signatures (n, seed -> image, z) and a
copy of sampler.json in ``assets.extra/``; sampler.onnx and the signatures are checked against
``LatentSampler.sample`` (portable noise) before anything is placed.

A class-conditional run (``model.num_classes`` = K > 0) exports the same files, each taking the class as an
int32 ``label`` input (``keras_vae.export.contract``): the decode/encode signatures and ONNX files beside z or
the image, sampler.onnx and the sample signatures beside their noise or (n, seed). Each class is drawn from
the run's ``samplers/classes.json`` sampler (copied as EXPORT_DIR/class_samplers.json), or N(0, I) where the run
has none (``keras_vae.export.class_table``); export.json ``conditional`` says which, and that the export takes
labels.

Everything is built in a temporary folder inside EXPORT_DIR and verified there (SavedModel
reloaded, warmup replayed, every ONNX file loaded in onnxruntime, parity), and its export.json is
written there too; only then is each piece moved into place with a rename: first the old export.json
moves out (from here on the folder has no export.json, which every reader refuses), then the ONNX
files, sampler.json, attributes.json, the whole version folder in ONE rename (with ``force``, one
atomic exchange with the old folder where Linux offers renameat2), and last export.json: the commit.
So at every moment EXPORT_DIR holds the old export whole, the new export whole, or no export.json.
A placement cut short (kill -9) is undone by the next export: the files it placed that match its
staged export.json are removed, so a rerun needs no ``--force`` unless the old export is still
committed. An existing version is replaced only with ``force``. A new version may be added beside
others: the ONNX files and export.json then describe the newest export.

The exported graphs compute in float32 whatever precision the run trained in: the model is loaded
under the float32 dtype policy (a mixed_bfloat16 graph has no onnxruntime Conv kernel, and the float32
weights are what training produced), and TensorFloat-32 is switched off while the export is built and
checked (``float32_execution``), so parity compares float32 with float32 on GPUs too. Parity bounds come
from the round-off of each network (``keras_vae.export.roundoff``), not from one fixed tolerance.

One export per EXPORT_DIR at a time (a lock file with the pid, ``keras_vae.export.locking``); temporary
folders left by a killed export are removed by the next one. export.json and the ONNX metadata
name the source run by its folder name only (no absolute path of the exporting machine).
"""
from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from keras_vae.export import contract
from keras_vae.export.locking import LOCK_FILE, folder_lock
from keras_vae.errors import ArtifactError, ConfigError
from keras_vae.runs.folder import MODEL_FILE, load_model, load_run_config
from keras_vae.utils.files import file_sha256, write_json
from keras_vae.utils.validation import short

log = logging.getLogger(__name__)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
VARIANT_FILES = (contract.DECODER_FLOAT16_ONNX, contract.DECODER_QUANTIZED_ONNX)
WARMUP_BATCH_SIZES = (1, 8)
TMP_PREFIX = ".export-tmp-"
MAX_VERSION = 2 ** 63 - 1  # TF Serving versions are int64
# progress units (``progress(n)``) of an export: loading the run; SavedModel, warmup, decoder.onnx, encoder.onnx,
# sampler.onnx + sessions, SavedModel reload + warmup replay, parity, sampler parity; placing the files
EXPORT_STEPS = 10


def export_steps(float16: bool = False, quantize: bool = False) -> int:
    """Units of work ``export_run`` reports to its ``progress`` (one per variant besides ``EXPORT_STEPS``)."""
    return EXPORT_STEPS + int(bool(float16)) + int(bool(quantize))


def _no_progress(n: int = 1) -> None:
    pass


def _check_version(version) -> int:
    if isinstance(version, bool) or not isinstance(version, (int, np.integer, str)):
        raise ConfigError(f"--version must be a positive integer, got {version!r}")
    try:
        value = int(version)
    except ValueError:
        raise ConfigError(f"--version must be a positive integer, got {version!r}") from None
    if value < 1 or str(value) != str(version).strip():
        raise ConfigError(f"--version must be a positive integer (TF Serving version folder), got {version!r}")
    if value > MAX_VERSION:
        raise ConfigError(f"--version must be a positive integer <= {MAX_VERSION} (TF Serving versions are "
                          f"int64), got {version!r}")
    return value


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or len(name) > 63:
        raise ConfigError(f"--name {short(name)} is not a valid model name: use 1-63 letters, digits, '_', '.' "
                          "or '-', starting with a letter or digit")
    return name


def _check_out_dir(out_dir: Path, version_dir: Path, force: bool) -> None:
    """Refuse to overwrite a version, or to write into a folder that is not an export, without force."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ArtifactError(f"export folder {str(out_dir)!r} is a file: pass a folder to --out")
    if (out_dir / MODEL_FILE).is_file():  # even with force: its sampler.json would be replaced by the export's
        raise ArtifactError(f"export folder {str(out_dir)!r} is a run folder (it holds model.keras): export into "
                            "another folder, e.g. exports/NAME")
    if force:
        return
    if version_dir.exists():
        raise ArtifactError(
            f"{str(version_dir)!r} already exists: pass a new --version, or --force to replace it")
    if out_dir.is_dir() and any(not _ours(p.name) for p in out_dir.iterdir()):
        if not ((out_dir / contract.EXPORT_JSON).is_file() or (out_dir / contract.SAVEDMODEL_DIR).is_dir()):
            raise ArtifactError(
                f"export folder {str(out_dir)!r} exists and is not a keras-vae export: choose a new or empty "
                "folder, or pass --force to write into it")


def _ours(name: str) -> bool:
    """Entries an interrupted export of this package leaves in EXPORT_DIR (temp folders, the lock)."""
    return name.startswith(TMP_PREFIX) or name == LOCK_FILE


def _staged_manifests(out_dir: Path) -> list[Path]:
    """export.json files of temporary folders whose export was killed while placing its files."""
    return sorted(p / contract.EXPORT_JSON for p in out_dir.glob(TMP_PREFIX + "*") if (p / contract.EXPORT_JSON).is_file())


def _placement_cut_short(out_dir: Path) -> bool:
    """True when an export was killed after it began to place files and before its commit (no export.json)."""
    return not (out_dir / contract.EXPORT_JSON).exists() and bool(_staged_manifests(out_dir))


def _undo_placement(out_dir: Path, manifest_path: Path) -> None:
    """Remove what a placement cut short put into ``out_dir``: every file its staged export.json lists
    that is there with that SHA-256 (a file that differs was not placed by it and stays)."""
    try:
        files = json.loads(manifest_path.read_text())["files"]
        entries = [(out_dir / name, entry["sha256"]) for name, entry in files.items()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return
    root = out_dir.resolve()
    for path, sha256 in entries:
        with contextlib.suppress(OSError):
            if path.is_file() and root in path.resolve().parents and file_sha256(path) == sha256:
                log.warning("removing %s, placed by an export that was interrupted before its commit", path)
                path.unlink()
    base = out_dir / contract.SAVEDMODEL_DIR
    for folder in sorted(base.rglob("*"), reverse=True) if base.is_dir() else ():
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _remove_leftovers(out_dir: Path) -> None:
    """Undo a placement cut short (no export.json was committed) and delete temporary folders of
    killed exports (call only while holding the lock)."""
    if _placement_cut_short(out_dir):
        for manifest_path in _staged_manifests(out_dir):
            _undo_placement(out_dir, manifest_path)
    for p in out_dir.glob(TMP_PREFIX + "*"):
        log.warning("removing %s left by an interrupted export", p)
        shutil.rmtree(p, ignore_errors=True)
    base = out_dir / contract.SAVEDMODEL_DIR
    if base.is_dir():
        for p in base.glob("*/.*.old-*"):  # _replace_dir's fallback, interrupted
            shutil.rmtree(p, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two folders in one atomic renameat2(RENAME_EXCHANGE); False where it is unavailable."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def _file_entries(root: Path, paths) -> dict[str, dict[str, Any]]:
    return {str(p.relative_to(root)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
            for p in sorted(paths) if p.is_file()}


def _replace_dir(src: Path, dst: Path) -> None:
    """Move folder ``src`` to ``dst`` with one rename; an existing ``dst`` is swapped out atomically
    (renameat2 exchange, then the old copy, now at ``src``, is deleted) or, where that is not
    available, renamed aside first."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and _exchange(src, dst):
        shutil.rmtree(src, ignore_errors=True)
        return
    old = None
    if dst.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dst.name}.old-", dir=dst.parent))
        os.replace(dst, old / dst.name)
    os.replace(src, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def float32_execution():
    """Within the block new Keras layers compute in float32 and TensorFlow runs float32 matmuls and
    convolutions in full float32 (no TF32 on Ampere+ GPUs); both settings are restored afterwards."""
    import keras
    import tensorflow as tf

    policy = keras.config.dtype_policy()
    tf32 = tf.config.experimental.tensor_float_32_execution_enabled()
    keras.config.set_dtype_policy("float32")
    tf.config.experimental.enable_tensor_float_32_execution(False)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(policy)
        tf.config.experimental.enable_tensor_float_32_execution(tf32)


def check_float32_model(model) -> None:
    """ArtifactError unless every layer of the model's encoder and decoder computes in float32."""
    from keras_vae.export.roundoff import compute_dtype

    dtype = compute_dtype(model)
    if dtype != "float32":
        raise ArtifactError(
            f"the model computes in {dtype} (dtype policy {model.dtype_policy.name!r}); exports compute in float32: "
            "load it with keras_vae.runs.folder.load_model inside keras_vae.export.exporter.float32_execution() "
            "(export_run does), or export the run folder with keras-vae export")


def load_run_sampler(run_dir: Path, latent_dim: int, kind: str | None = None):
    """(sampler, source): the run's sampler.json (or, with ``kind``, the prior or the stored candidate
    ``samplers/KIND.json``) checked against the model; the prior N(0, I) when the run has none."""
    from keras_vae.sampling.posterior import SAMPLERS_DIR, load_sampler
    from keras_vae.sampling.samplers import prior_sampler

    sampler = load_sampler(run_dir, latent_dim, kind)
    if sampler is None:
        return prior_sampler(latent_dim), f"prior N(0, I) (the run folder has no {contract.SAMPLER_JSON})"
    if kind is None:
        return sampler, f"run folder {contract.SAMPLER_JSON}"
    return sampler, "prior N(0, I) (--sampler prior)" if kind == "prior" else f"run folder {SAMPLERS_DIR}/{kind}.json"


def build_export(model, work: Path, name: str, version: int, source_run: str, source_sha256: str,
                 float16: bool = False, quantize: bool = False, functions=None, sampler=None,
                 sampler_source: str | None = None, progress=None, classes=None) -> dict[str, Any]:
    """Write and verify every artifact under ``work`` (a fresh folder); returns the report without files.
    ``progress(n)`` is called after each step (``export_steps`` less loading and placing). ``classes``: the
    ``ClassSamplers`` of a class-conditional model (required for one, ``keras_vae.export.class_table``)."""
    step = progress or _no_progress
    import tensorflow as tf

    from keras_vae.export.sampler_check import check_sampler_parity
    from keras_vae.export.sampler_onnx import sampler_metadata, write_sampler_onnx
    from keras_vae.export.sampler_tf import make_sample_functions
    from keras_vae.sampling.noise import NOISE_ALGORITHM
    from keras_vae.sampling.samplers import prior_sampler

    from keras_vae.export import onnx_export, onnx_optimize, quantize as quant
    from keras_vae.export.parity import check_parity, random_inputs
    from keras_vae.export.savedmodel import call_signature, describe_signatures, write_savedmodel
    from keras_vae.export.signatures import make_functions
    from keras_vae.export.warmup import read_warmup_requests, serving_api_available, write_warmup_requests

    check_float32_model(model)
    num_classes = int(getattr(model, "num_classes", 0) or 0)
    if num_classes and (classes is None or classes.num_classes != num_classes):
        raise ConfigError(f"the model is class-conditional ({num_classes} classes): pass its class samplers "
                          "(keras_vae.export.class_table.export_class_samplers), or export the run with export_run")
    functions = functions or make_functions(model)
    # the ONNX graphs: the same functions, without the label assertions (the clients check labels)
    onnx_functions = make_functions(model, checks=False) if num_classes else functions
    if sampler is None:
        sampler, sampler_source = prior_sampler(model.latent_dim), sampler_source or "prior N(0, I)"
    classes = classes if num_classes else None
    sample_functions = make_sample_functions(model, sampler, classes)
    rel_version = Path(contract.SAVEDMODEL_DIR) / name / str(version)
    version_dir = work / rel_version
    version_dir.parent.mkdir(parents=True)
    write_savedmodel(model, version_dir, {**functions, **sample_functions})
    sampler.save(work / contract.SAMPLER_JSON)
    (version_dir / contract.SAMPLER_ASSET).parent.mkdir(parents=True, exist_ok=True)
    sampler.save(version_dir / contract.SAMPLER_ASSET)
    step(1)

    # warmup records: each signature at a few batch sizes
    warmup: dict[str, Any]
    reason = serving_api_available()
    if reason is None:
        requests = []
        for batch in WARMUP_BATCH_SIZES:
            inputs = random_inputs(model, batch, seed=1000 + batch)
            for signature, (_, spec) in functions.items():
                specs = spec if isinstance(spec, (list, tuple)) else [spec]
                requests.append((signature, {s.name: inputs[s.name] for s in specs}))
            for signature in sample_functions:
                label = {contract.LABEL_INPUT: np.int32(batch % num_classes)} if num_classes else {}
                requests.append((signature, {contract.SAMPLE_N_INPUT: np.int32(batch),
                                             contract.SAMPLE_SEED_INPUT: np.int64(batch), **label}))
        path, count = write_warmup_requests(version_dir, name, requests)
        warmup = {"file": str(rel_version / contract.WARMUP_FILE), "records": count,
                  "batch_sizes": list(WARMUP_BATCH_SIZES)}
    else:
        log.warning("no TF Serving warmup file: %s", reason)
        warmup = {"file": None, "reason": reason}
    step(1)

    # ONNX encoder and decoder from the same tf.functions, plain TF ops only
    meta = {role: onnx_export.model_metadata(model, role, source_run, source_sha256)
            for role in ("decoder", "encoder")}
    decode_fn, decode_spec = onnx_functions["serving_default"]
    encode_fn, encode_spec = onnx_functions["encode"]
    onnx_export.convert_function(decode_fn, decode_spec, meta["decoder"], work / contract.DECODER_ONNX)
    decoder_graph = onnx_optimize.optimize_file(work / contract.DECODER_ONNX)  # same function, faster (parity below)
    step(1)
    onnx_export.convert_function(encode_fn, encode_spec, meta["encoder"], work / contract.ENCODER_ONNX)
    step(1)
    write_sampler_onnx(sampler, sampler_metadata(model, sampler, source_run, source_sha256, classes),
                       work / contract.SAMPLER_ONNX, classes)
    sessions = {f: onnx_export.load_session(work / f)
                for f in (contract.DECODER_ONNX, contract.ENCODER_ONNX, contract.SAMPLER_ONNX)}
    step(1)

    # verify: reload the SavedModel, replay the warmup requests, parity against Keras
    loaded = tf.saved_model.load(str(version_dir))
    signatures = describe_signatures(loaded)
    missing = sorted(set(contract.SIGNATURES + contract.SAMPLE_SIGNATURES) - set(signatures))
    if missing:
        raise ArtifactError(f"the SavedModel lacks signatures {missing}")
    if warmup["file"]:
        for _, signature, inputs in read_warmup_requests(version_dir / contract.WARMUP_FILE):
            call_signature(loaded, signature, inputs)
    step(1)
    parity = check_parity(model, loaded, sessions)
    step(1)
    parity["sampler"] = check_sampler_parity(model, sampler, loaded, sessions[contract.SAMPLER_ONNX],
                                             classes=classes)
    step(1)

    variants: dict[str, Any] = {}
    if float16:
        quant.to_float16(work / contract.DECODER_ONNX, work / contract.DECODER_FLOAT16_ONNX,
                         {**meta["decoder"], contract.META_PRECISION: "float16"})
        variants["float16"] = {"file": contract.DECODER_FLOAT16_ONNX, **quant.measure_error(
            work / contract.DECODER_ONNX, work / contract.DECODER_FLOAT16_ONNX, model.latent_dim,
            num_classes=num_classes)}
        step(1)
    if quantize:
        quant.quantize_dynamic(work / contract.DECODER_ONNX, work / contract.DECODER_QUANTIZED_ONNX,
                               {**meta["decoder"], contract.META_PRECISION: "int8-dynamic"})
        variants["quantized"] = {"file": contract.DECODER_QUANTIZED_ONNX, "method": "onnxruntime dynamic, int8 weights",
                                 **quant.measure_error(work / contract.DECODER_ONNX,
                                                       work / contract.DECODER_QUANTIZED_ONNX, model.latent_dim,
                                                       num_classes=num_classes)}
        step(1)
    if variants:
        for info in variants.values():
            info["reference"] = contract.DECODER_ONNX
            info["bytes_float32"] = (work / contract.DECODER_ONNX).stat().st_size

    onnx_files = {contract.DECODER_ONNX: "decoder", contract.ENCODER_ONNX: "encoder",
                  contract.SAMPLER_ONNX: "sampler", **{v["file"]: "decoder" for v in variants.values()}}
    conditional = {}
    if classes is not None:
        conditional = {"conditional": {
            "num_classes": num_classes, "label_input": contract.LABEL_INPUT, "label_dtype": contract.LABEL_DTYPE,
            "label_range": [0, num_classes], "sample_label": "int32 scalar (all n draws of one class)",
            "class_samplers_file": contract.CLASS_SAMPLERS_JSON, "class_samplers": classes.describe()}}
    return {
        **conditional,
        "savedmodel": {"path": str(rel_version), "name": name, "version": version,
                       "signatures": signatures, "warmup": warmup},
        "sampler": {"kind": sampler.kind, "components": sampler.num_components, "source": sampler_source,
                    "file": contract.SAMPLER_JSON, "onnx": contract.SAMPLER_ONNX,
                    "savedmodel_asset": str(rel_version / contract.SAMPLER_ASSET),
                    "signatures": list(contract.SAMPLE_SIGNATURES), "noise": NOISE_ALGORITHM,
                    # a conditional export draws by label: sampler.onnx and the sample signatures are the class table
                    **({"onnx_kind": contract.SAMPLER_KIND_CLASSES, "drawn_by": "class samplers (conditional."
                        "class_samplers); sampler.json is the run's unconditional sampler"} if classes is not None
                       else {})},
        "onnx": {f: {"role": role, **onnx_export.describe_onnx(work / f)} for f, role in onnx_files.items()},
        "variants": variants,
        "parity": parity,
        "decoder_graph": decoder_graph,
    }


def check_export(run_dir, out_dir, version: int = 1, name: str | None = None, force: bool = False,
                 sampler: str | None = None):
    """The checks ``export_run`` makes before any work (the run folder, the stored sampler ``sampler`` asks
    for, the version, the name, the export folder), so that a command can make them before it says what it
    exports; returns (the run's RunConfig, the model name, the version's folder relative to ``out_dir``)."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    version = _check_version(version)
    config = load_run_config(run_dir)  # checks the run folder, model.keras presence and config.json
    if sampler is not None and sampler != "prior":
        from keras_vae.sampling.posterior import SAMPLERS_DIR, load_sampler

        if not (run_dir / SAMPLERS_DIR / f"{sampler}.json").is_file():
            load_sampler(run_dir, config.model.latent_dim, sampler)  # raises: which candidate is missing, and why
    name = _check_name(name or config.model.kind)
    rel_version = Path(contract.SAVEDMODEL_DIR) / name / str(version)
    if not (out_dir.is_dir() and _placement_cut_short(out_dir)):  # else checked once that is undone, below
        _check_out_dir(out_dir, out_dir / rel_version, force)
    return config, name, rel_version


def export_run(run_dir, out_dir, version: int = 1, name: str | None = None, force: bool = False,
               float16: bool = False, quantize: bool = False, sampler: str | None = None,
               attributes: bool = True, progress=None) -> dict[str, Any]:
    """Export the model of ``run_dir`` into ``out_dir``; returns the report written to export.json.
    ``sampler`` ('prior' | 'gaussian' | 'gmm') exports that candidate instead of the run's sampler.json;
    ``attributes`` writes attributes.json (per-class mean codes) when the run's data has labels.
    ``progress(n)`` (e.g. a keras_vae.utils.progress bar's ``update``) is called as the
    ``export_steps(float16, quantize)`` steps are done."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    version = _check_version(version)
    config, name, rel_version = check_export(run_dir, out_dir, version, name, force, sampler)

    with float32_execution():
        return _export_float32(run_dir, out_dir, config, name, rel_version, version, force, float16, quantize,
                               sampler, attributes, progress)


def _export_float32(run_dir: Path, out_dir: Path, config, name: str, rel_version: Path, version: int, force: bool,
                    float16: bool, quantize: bool, sampler: str | None, attributes: bool,
                    progress=None) -> dict[str, Any]:
    model_path = run_dir / MODEL_FILE
    source_sha256 = file_sha256(model_path)
    model = load_model(model_path)
    if model.model_config.kind != config.model.kind:
        raise ArtifactError(f"{str(model_path)!r} holds a {model.model_config.kind!r} model but config.json "
                            f"says {config.model.kind!r}: the run folder is inconsistent")
    source_run = run_dir.resolve().name  # the folder's name: an absolute path would leak the user's home
    latent_sampler, sampler_source = load_run_sampler(run_dir, int(model.latent_dim), sampler)
    classes = None
    if getattr(model, "num_classes", 0):
        from keras_vae.export.class_table import export_class_samplers

        classes = export_class_samplers(run_dir, int(model.num_classes), int(model.latent_dim), sampler)
    from keras_vae.export.attributes import run_attributes

    attribute_table, attribute_info = run_attributes(model, config, attributes)
    (progress or _no_progress)(1)

    created_out = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(out_dir, "export"):
            _remove_leftovers(out_dir)
            _check_out_dir(out_dir, out_dir / rel_version, force)  # again, now that no one else writes
            report = _export_locked(model, config, out_dir, rel_version, name, version, source_run,
                                    source_sha256, float16, quantize, latent_sampler, sampler_source,
                                    (attribute_table, attribute_info), progress=progress, classes=classes)
    except BaseException:
        if created_out and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    return report


def _export_locked(model, config, out_dir: Path, rel_version: Path, name: str, version: int, source_run: str,
                   source_sha256: str, float16: bool, quantize: bool, latent_sampler,
                   sampler_source, attributes=(None, None), progress=None, classes=None) -> dict[str, Any]:
    from keras_vae import __version__

    work = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=out_dir))
    try:
        built = build_export(model, work, name, version, source_run, source_sha256,
                             float16=float16, quantize=quantize, sampler=latent_sampler,
                             sampler_source=sampler_source, progress=progress, classes=classes)
        attribute_table, attribute_info = attributes
        top_files = [*built["onnx"], contract.SAMPLER_JSON]
        if classes is not None:
            classes.save(work / contract.CLASS_SAMPLERS_JSON)
            top_files.append(contract.CLASS_SAMPLERS_JSON)
        if attribute_table is not None:
            attribute_table.save(work / contract.ATTRIBUTES_JSON)
            top_files.append(contract.ATTRIBUTES_JSON)
        files = _file_entries(work, [work / f for f in top_files])
        files.update(_file_entries(work, (work / rel_version).rglob("*")))
        report = {
            "format": "keras-vae-export",
            "format_version": 1,
            "package_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "source": {"run_dir": source_run, "model_file": MODEL_FILE, "model_sha256": source_sha256,
                       "preset": config.preset, "training_precision": config.train.precision},
            "model": {"kind": model.model_config.kind, "latent_dim": int(model.latent_dim),
                      "image_shape": [int(s) for s in model.image_shape],
                      "value_range": [0, 1], "internal_value_range": list(model.value_range),
                      **({"num_classes": int(model.num_classes)} if classes is not None else {})},
            **built,
            **({"attributes": attribute_info} if attribute_info is not None else {}),
            "files": files,
        }
        # place: the staged export.json first (a killed placement is undone from it, _remove_leftovers), the old
        # export.json out (until the commit every reader refuses the folder), the ONNX files, sampler.json,
        # stale variants removed, the version folder in ONE rename, and last export.json: the commit
        staged = work / contract.EXPORT_JSON
        write_json(staged, report)
        os.chmod(staged, 0o644)  # mkstemp makes 0600; servers read it as others
        try:
            if (out_dir / contract.EXPORT_JSON).exists():
                os.replace(out_dir / contract.EXPORT_JSON, work / (contract.EXPORT_JSON + ".replaced"))
            for f in top_files:
                os.replace(work / f, out_dir / f)
            for f in (*VARIANT_FILES, contract.ATTRIBUTES_JSON, contract.CLASS_SAMPLERS_JSON):
                if f not in top_files and (out_dir / f).exists():
                    (out_dir / f).unlink()
            _replace_dir(work / rel_version, out_dir / rel_version)
            os.replace(staged, out_dir / contract.EXPORT_JSON)
        except BaseException:  # an error or Ctrl-C while placing: undo it now, as the next export would
            if staged.is_file():
                _undo_placement(out_dir, staged)
            raise
        (progress or _no_progress)(1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return report
