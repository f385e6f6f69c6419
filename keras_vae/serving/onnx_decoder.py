"""Decode latents with an exported ``decoder.onnx`` through onnxruntime (no TensorFlow import).

The file follows ``export/contract.py``: input ``z`` float32 [N, latent_dim], output ``image`` float32
[N, H, W, C] in ``value_range`` (``[0, 1]``), dynamic batch axis, ``keras_vae.*`` metadata_props.

Execution providers: by default ``CUDAExecutionProvider`` (then CPU as fallback) when
``onnxruntime.get_available_providers()`` lists it -- i.e. when ``onnxruntime-gpu`` is installed --
else ``CPUExecutionProvider``. Pass ``providers=[...]`` to choose explicitly.

Sampling: ``sample``/``sample_latents`` draw from the exported latent sampler, ``sampler.onnx`` beside
the decoder (``export/contract.py``: eps [N, d], u [N] -> z [N, d]), fed with the portable noise of
``keras_vae.sampling.noise`` -- so a seed gives the latents that the run folder (``LatentSampler.sample``), the
SavedModel ``sample`` signature, the Node package and the browser explorer give. An export without
sampler.onnx (made before samplers existed) samples the prior N(0, I) with the same noise.

Classes: a class-conditional export's decoder.onnx takes ``label`` int32 [N] beside ``z``, and its sampler.onnx a
``label`` beside the noise (class label's own sampler; ``export/contract.py``). ``num_classes`` says which
(0: unconditional); ``decode(z, label=...)``, ``sample(n, seed, label=...)`` and the other methods then need a
label (one integer, or one per row, in [0, num_classes)), and an unconditional export refuses one, each with
a one-line DataError.

Threads: ``OnnxDecoder`` holds onnxruntime sessions (at most two: one intra-op thread for small
calls, one thread per core for large ones, see ``serving/onnx_threads.py``; ``threads=n`` fixes one
count for every call); onnxruntime documents ``InferenceSession.run`` as safe to call concurrently,
and the second session is created once under a lock, so one instance may be shared by any number of
threads (e.g. a web server's workers). More caller threads help only up to the core count.

Chunks: a large decode call runs as several onnxruntime calls of ``chunk`` latents each, so that
the intermediate tensors stay in cache (``serving/onnx_batching.py``: about 2 MiB of largest
activation per call, 4 latents at celeba-64; 13-16% less CPU time per image than one call of 64).
"""
from __future__ import annotations

import json
import logging
import math
import re
import threading
from pathlib import Path

import numpy as np

from keras_vae.export import contract
from keras_vae.utils.cpu import usable_cores
from keras_vae.errors import ArtifactError, DataError
from keras_vae.sampling.noise import NOISE_ALGORITHM, SEED_LIMIT, check_seed, portable_noise
from keras_vae.utils.files import file_sha256
from keras_vae.utils.validation import short
from keras_vae.utils.images import save_grid, to_uint8
from keras_vae.serving.onnx_batching import chunk_size, largest_activation_bytes
from keras_vae.serving.onnx_threads import macs_per_image, session_options, threads_for

log = logging.getLogger(__name__)
MAX_OUTPUT_BYTES = 1 << 30  # sample()/interpolate(): at most 1 GiB of float32 images per call

OUTPUTS = ("float", "uint8")
REQUIRED_METADATA = (contract.META_LATENT_DIM, contract.META_IMAGE_SHAPE, contract.META_VALUE_RANGE)


def default_providers() -> list[str]:
    """["CUDAExecutionProvider", "CPUExecutionProvider"] when CUDA is available, else CPU only."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def refuse_run_folder(folder: Path, onnx_name: str) -> None:
    """ArtifactError when ``folder`` is a run folder (model.keras, no ``onnx_name``) passed for an export folder."""
    if not (folder / onnx_name).exists() and (folder / "model.keras").is_file():
        raise ArtifactError(f"{str(folder)!r} is a run folder, not an export folder: export it first "
                            f"(keras-vae export {folder} --out DIR), or open it with keras_vae.load (TensorFlow)")


def resolve_decoder_path(path) -> Path:
    """A decoder.onnx path, or an export folder that contains one."""
    path = Path(path)
    if path.is_dir():
        refuse_run_folder(path, contract.DECODER_ONNX)
        path = path / contract.DECODER_ONNX
    if not path.is_file():
        raise ArtifactError(f"decoder file not found: {path} (expected an export folder or its {contract.DECODER_ONNX})")
    return path


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
PRIOR_ON_PURPOSE = "or, to sample the prior N(0, I) on purpose, pass sampler=False; keras-vae sample: --sampler prior"


def listed_files(folder: Path) -> dict | None:
    """The ``files`` table of ``folder/export.json`` (names -> {"sha256", "bytes"}); None without an
    export.json. ArtifactError when it is not JSON or has no ``files`` object."""
    manifest_path = Path(folder) / contract.EXPORT_JSON
    if not manifest_path.is_file():
        return None
    try:
        files = json.loads(manifest_path.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{manifest_path} is unreadable or has no 'files' table ({type(exc).__name__}: {exc}): "
                            f"re-export the model") from None
    if not isinstance(files, dict):
        raise ArtifactError(f"{manifest_path}: 'files' must be an object of file names, got {type(files).__name__}: "
                            f"re-export the model")
    return files


def _recorded(manifest_path: Path, name: str, entry) -> tuple[str, int | None]:
    """(sha256, bytes or None) of one export.json entry, after checking their types."""
    where = f"{manifest_path}: files[{name!r}]"
    if not isinstance(entry, dict):
        raise ArtifactError(f"{where} must be an object with 'sha256' and 'bytes', got {short(entry)}: "
                            f"re-export the model")
    expected, size = entry.get("sha256"), entry.get("bytes")
    if not isinstance(expected, str) or not _SHA256_HEX.fullmatch(expected):
        raise ArtifactError(f"{where}.sha256 must be 64 lower-case hex digits, got {short(expected)}: "
                            f"re-export the model")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ArtifactError(f"{where}.bytes must be an integer >= 0, got {type(size).__name__} {short(size)}: "
                            f"re-export the model")
    return expected, size


def verify_export_json(path: Path, required: bool = False) -> bool:
    """Check ``path`` against the sha256/bytes in the export.json beside it.

    Without an export.json: ArtifactError when ``required`` (a deleted manifest must not switch the
    check off silently), else False. A manifest that does not list ``path``, an entry of the wrong
    types (a string for ``bytes``), or a file whose size or SHA-256 differs: ArtifactError naming the field."""
    path = Path(path)
    manifest_path = path.parent / contract.EXPORT_JSON
    files = listed_files(path.parent)
    if files is None:
        if required:
            raise ArtifactError(
                f"{path} has no {contract.EXPORT_JSON} beside it, so its SHA-256 cannot be checked: keep the "
                f"export folder together (re-export if it was lost), or pass verify=False (sample and "
                f"serve-demo: --no-verify) to load an unverified decoder")
        return False
    if path.name not in files:
        raise ArtifactError(f"{manifest_path} does not list {path.name} under 'files': the file is not part of that "
                            f"export -- re-export it, or pass verify=False to skip this check")
    expected, size = _recorded(manifest_path, path.name, files[path.name])
    actual_size, actual = path.stat().st_size, file_sha256(path)
    differs = []
    if size is not None and actual_size != size:
        differs.append(f"size {actual_size} bytes, recorded {size}")
    if actual != expected:
        differs.append(f"sha256 {actual[:16]}..., recorded {expected[:16]}...")
    if differs:
        raise ArtifactError(
            f"{path} does not match {manifest_path.name}: {'; '.join(differs)}; the file was changed or is "
            f"corrupt -- re-export it, or pass verify=False (sample and serve-demo: --no-verify) to skip this check")
    return True


def check_listed_present(folder: Path, name: str, instead: str, strict: bool = True) -> None:
    """ArtifactError when ``folder/export.json`` lists ``name`` but the file is missing (an incomplete export
    must not silently fall back to something else); ``instead`` tells how to do without it on purpose.
    ``strict=False``: an unreadable export.json is not an error here (unverified loading)."""
    try:
        files = listed_files(folder)
    except ArtifactError:
        if strict:
            raise
        return
    if files is not None and name in files and not (Path(folder) / name).is_file():
        raise ArtifactError(f"{Path(folder) / name} is missing, but {contract.EXPORT_JSON} lists it: the export is "
                            f"incomplete -- copy the whole export folder or re-export it ({instead})")


def _asarray(value, name: str) -> np.ndarray:
    """np.asarray with ragged or unconvertible input as a DataError (NumPy raises ValueError/TypeError)."""
    try:
        return np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"{name} is not a rectangular array of numbers ({short(str(exc), 120)})") from None


def _is_dynamic(dim) -> bool:
    return dim is None or isinstance(dim, str)


class OnnxDecoder:
    """A ``decoder.onnx`` behind a NumPy API: decode, sample, interpolate, traverse.

    ``OnnxDecoder(path)`` accepts the .onnx file or its export folder. ``max_batch`` bounds one
    ``decode`` call (``sample`` splits larger requests). ``verify=True`` checks the file's SHA-256
    against the export.json beside it and refuses a decoder without one; ``verify=False`` skips the
    check. ``sampler`` is the sampler.onnx to draw from (default: the one beside the decoder, if any;
    ``False``: always the prior N(0, I)). ``threads``: intra-op threads of every call; None chooses
    per call (one thread below ``onnx_threads.SMALL_CALL_MACS`` of work, else one per core).
    ``chunk``: latents per onnxruntime call; None chooses from the graph (``onnx_batching``), an
    integer fixes it. Thread-safe (shared sessions).
    """

    def __init__(self, path, providers=None, max_batch: int = contract.MAX_BATCH, verify: bool = True,
                 sampler=None, threads: int | None = None, chunk: int | None = None):
        if isinstance(max_batch, bool) or not isinstance(max_batch, (int, np.integer)) or max_batch < 1:
            raise DataError(f"max_batch must be >= 1 (an integer), got {max_batch!r}")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer))
                                    or threads < 1):
            raise DataError(f"threads must be an integer >= 1 or None (automatic), got {threads!r}")
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1):
            raise DataError(f"chunk must be an integer >= 1 or None (automatic), got {chunk!r}")
        self.max_batch = int(max_batch)
        self.path = resolve_decoder_path(path)
        self.verified = verify_export_json(self.path, required=True) if verify else False
        self._providers = list(providers) if providers else default_providers()
        self._cores = usable_cores()
        self._fixed_threads = None if threads is None else int(threads)
        self._image_macs = 0.0
        if self._fixed_threads is None and self._cores > 1:
            try:
                self._image_macs = macs_per_image(self.path)
            except Exception:  # noqa: BLE001 - an unreadable graph is reported by the session below
                self._image_macs = float("inf")
        if chunk is not None:
            self.chunk = int(chunk)
        else:
            try:
                self.chunk = chunk_size(largest_activation_bytes(self.path), self.max_batch)
            except Exception:  # noqa: BLE001 - an unreadable graph is reported by the session below
                self.chunk = self.max_batch
        self._lock = threading.Lock()
        self._sessions: dict[int, object] = {}
        self._session = self._session_for(1)
        try:
            self.metadata = dict(self._session.get_modelmeta().custom_metadata_map)
        except UnicodeDecodeError as exc:
            raise ArtifactError(f"{self.path} has unreadable metadata_props (not UTF-8): the file is corrupt") from exc
        self._latent_dim, self._image_shape, self._value_range = self._read_metadata()
        self._check_graph()
        self._sampler, self.sampler_path, self.sampler_kind = None, None, "prior"
        self._sampler_classes = 0  # classes sampler.onnx draws from by label (0: it takes no label)
        if sampler is not False:
            path = Path(sampler) if sampler is not None else self.path.parent / contract.SAMPLER_ONNX
            if sampler is None:  # a sampler export.json lists must be there: never the prior instead
                check_listed_present(path.parent, contract.SAMPLER_ONNX,
                                     PRIOR_ON_PURPOSE, verify)
            if sampler is not None or path.is_file():
                self._load_sampler(path, self._providers, verify)

    # -- loading -------------------------------------------------------------------------------
    def threads_for(self, batch: int) -> int:
        """Intra-op threads a decode call of ``batch`` latents runs with (each of its chunks)."""
        if self._fixed_threads is not None:
            return self._fixed_threads
        return threads_for(min(batch, self.chunk), self._image_macs, self._cores)

    def _session_for(self, batch: int):
        threads = self.threads_for(batch)
        session = self._sessions.get(threads)
        if session is None:
            with self._lock:
                session = self._sessions.get(threads)
                if session is None:
                    session = self._sessions[threads] = self._load(threads)
        return session

    def _load(self, threads: int):
        import onnxruntime as ort

        try:
            return ort.InferenceSession(str(self.path), session_options(threads), providers=self._providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/... types
            raise ArtifactError(f"onnxruntime cannot load {self.path}: {type(exc).__name__}: "
                                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") from exc

    def _read_metadata(self):
        meta = self.metadata
        for key in REQUIRED_METADATA:
            if key not in meta:
                raise ArtifactError(f"{self.path} has no metadata key {key!r}; it was not written by the "
                                    f"keras-vae exporter (found keys: {sorted(meta) or 'none'})")
        role = meta.get(contract.META_ROLE, "decoder")
        if role != "decoder":
            raise ArtifactError(f"{self.path} is a keras-vae {role!r}, not a decoder ({contract.META_ROLE})")
        try:
            latent_dim = int(meta[contract.META_LATENT_DIM])
            image_shape = tuple(int(v) for v in json.loads(meta[contract.META_IMAGE_SHAPE]))
            lo, hi = (float(v) for v in json.loads(meta[contract.META_VALUE_RANGE]))
        except (ValueError, TypeError) as exc:
            raise ArtifactError(f"{self.path} has malformed keras_vae metadata ({exc}): "
                                f"{ {k: meta[k] for k in REQUIRED_METADATA} }") from exc
        if latent_dim < 1 or len(image_shape) != 3 or min(image_shape) < 1 or not hi > lo:
            raise ArtifactError(f"{self.path} has invalid keras_vae metadata: latent_dim={latent_dim}, "
                                f"image_shape={list(image_shape)}, value_range={[lo, hi]}")
        return latent_dim, image_shape, (lo, hi)

    def _check_graph(self):
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        names_in, names_out = [i.name for i in inputs], [o.name for o in outputs]
        self._num_classes = _label_classes(self.path, self.metadata, inputs)
        if contract.LATENT_INPUT not in names_in or contract.IMAGE_OUTPUT not in names_out:
            raise ArtifactError(f"{self.path} must have input {contract.LATENT_INPUT!r} and output "
                                f"{contract.IMAGE_OUTPUT!r}; it has inputs {names_in}, outputs {names_out}")
        z = inputs[names_in.index(contract.LATENT_INPUT)]
        img = outputs[names_out.index(contract.IMAGE_OUTPUT)]
        for node, want in ((z, [self._latent_dim]), (img, list(self._image_shape))):
            shape = list(node.shape)
            if node.type != "tensor(float)":
                raise ArtifactError(f"{self.path}: {node.name!r} is {node.type}, expected tensor(float)")
            ok = len(shape) == 1 + len(want) and _is_dynamic(shape[0]) and all(
                _is_dynamic(d) or d == w for d, w in zip(shape[1:], want))
            if not ok:
                raise ArtifactError(f"{self.path}: graph declares {node.name!r} with shape {shape}, but the "
                                    f"metadata says [N, {', '.join(map(str, want))}] with a dynamic batch N")

    def _check_sampler_json(self, path: Path, verify: bool, kind: str) -> None:
        """The export's sampler.json beside ``path`` (when listed or present): verified, loadable by
        ``LatentSampler`` (finite float32 values, latents whose squares stay finite), of the same kind."""
        from keras_vae.sampling.samplers import LatentSampler

        json_path = _verified_beside(path, contract.SAMPLER_JSON, verify)
        if json_path is None:
            return
        stored = LatentSampler.load(json_path, self._latent_dim)
        if kind != "unknown" and stored.kind != kind:
            raise ArtifactError(f"{json_path} holds a {stored.kind!r} sampler but {path.name} draws from a {kind!r} "
                                f"one: they come from different exports -- re-export the model")

    def _check_class_samplers_json(self, path: Path, verify: bool, classes: int) -> None:
        """A conditional export's class_samplers.json beside ``path`` (when listed or present): verified, and
        holding one sampler per class of sampler.onnx."""
        json_path = _verified_beside(path, contract.CLASS_SAMPLERS_JSON, verify)
        if json_path is None:
            return
        from keras_vae.sampling.classes import CLASSES_FORMAT
        from keras_vae.sampling.samplers import LatentSampler

        try:
            data = json.loads(json_path.read_text())
            entries = data["classes"] if data.get("format") == CLASSES_FORMAT else None
            stored = {int(key): value for key, value in entries.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            raise ArtifactError(f"{json_path} is not a keras-vae class sampler file ({CLASSES_FORMAT!r}): "
                                "re-export the model") from None
        for key, value in stored.items():  # each a valid sampler of this decoder's latent size
            if LatentSampler.from_dict(value, f"{json_path} class {key}").latent_dim != self._latent_dim:
                raise ArtifactError(f"{json_path} class {key} draws latents of another size than {self.path.name} "
                                    f"({self._latent_dim}): they come from different exports -- re-export the model")
        if sorted(stored) != list(range(classes)):
            raise ArtifactError(f"{json_path} holds samplers for classes {sorted(stored)} but {path.name} draws "
                                f"{classes}: they come from different exports -- re-export the model")

    def _load_sampler(self, path: Path, providers, verify: bool) -> None:
        """Open sampler.onnx and check it against this decoder (role, noise algorithm, latent size) and
        against the sampler.json beside it."""
        import onnxruntime as ort

        if not path.is_file():
            raise ArtifactError(f"sampler file not found: {path} (pass the export's {contract.SAMPLER_ONNX}, "
                                f"or sampler=False for the prior)")
        if verify:
            verify_export_json(path)
        try:
            session = ort.InferenceSession(str(path), providers=providers)
            meta = dict(session.get_modelmeta().custom_metadata_map)
        except Exception as exc:  # onnxruntime's own error types; bad metadata bytes
            raise ArtifactError(f"onnxruntime cannot load {path}: {type(exc).__name__}: "
                                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") from exc
        if meta.get(contract.META_ROLE) != "sampler":
            raise ArtifactError(f"{path} is not a keras-vae sampler ({contract.META_ROLE} is "
                                f"{meta.get(contract.META_ROLE)!r}); re-export the model")
        if meta.get(contract.META_NOISE) != NOISE_ALGORITHM:
            raise ArtifactError(f"{path} expects noise {meta.get(contract.META_NOISE)!r}, this keras-vae draws "
                                f"{NOISE_ALGORITHM!r}: use the keras-vae version that exported it, or re-export")
        classes = _label_classes(path, meta, session.get_inputs())
        if classes and self._num_classes and classes != self._num_classes:
            raise ArtifactError(f"{path} draws {classes} classes but {self.path.name} decodes {self._num_classes}: "
                                "they come from different exports -- re-export the model")
        if self._num_classes and not classes:
            raise ArtifactError(f"{path} takes no label but {self.path.name} is class-conditional: they come from "
                                f"different exports -- re-export the model, or pass sampler=False for N(0, I)")
        names_in = sorted(i.name for i in session.get_inputs())
        names_out = [o.name for o in session.get_outputs()]
        want_in = sorted([contract.SAMPLER_EPS_INPUT, contract.SAMPLER_U_INPUT, *([contract.LABEL_INPUT] if classes else [])])
        if names_in != want_in or names_out != [contract.LATENT_OUTPUT]:
            raise ArtifactError(f"{path} must map inputs {want_in} to output [{contract.LATENT_OUTPUT!r}]; "
                                f"it has {names_in} -> {names_out}")
        if meta.get(contract.META_LATENT_DIM) != str(self._latent_dim):
            raise ArtifactError(f"{path} draws latents of size {meta.get(contract.META_LATENT_DIM)} but "
                                f"{self.path.name} decodes size {self._latent_dim}: they come from different exports")
        kind = meta.get(contract.META_SAMPLER_KIND, "unknown")
        if classes:
            self._check_class_samplers_json(path, verify, classes)
        else:
            self._check_sampler_json(path, verify, kind)
        self._sampler, self.sampler_path = session, path
        self.sampler_kind, self._sampler_classes = kind, classes

    # -- properties ----------------------------------------------------------------------------
    @property
    def latent_dim(self) -> int:
        """Length of one latent code z."""
        return self._latent_dim

    @property
    def num_classes(self) -> int:
        """Classes of a class-conditional export (its calls take a ``label``); 0 for an unconditional one."""
        return self._num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of one decoded image."""
        return self._image_shape

    @property
    def providers(self) -> list[str]:
        """Execution providers the session actually uses, in priority order."""
        return self._session.get_providers()

    def __repr__(self) -> str:
        classes = f"num_classes={self.num_classes}, " if self.num_classes else ""
        return (f"OnnxDecoder({str(self.path)!r}, latent_dim={self.latent_dim}, {classes}"
                f"image_shape={self.image_shape}, sampler={self.sampler_kind!r}, providers={self.providers})")

    # -- validation ----------------------------------------------------------------------------
    def _as_batch(self, z, name: str = "z") -> np.ndarray:
        """Validate latents -> float32 [N, latent_dim] (a 1-D code of length latent_dim is batch 1)."""
        arr = _asarray(z, name)
        if arr.dtype == object or not (np.issubdtype(arr.dtype, np.floating)):
            raise DataError(f"{name} must be a float array (float16/32/64), got dtype {arr.dtype}; "
                            f"convert integer codes explicitly, e.g. z.astype('float32')")
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise DataError(f"{name} must have shape [N, {self.latent_dim}] or [{self.latent_dim}], "
                            f"got rank {arr.ndim} shape {list(arr.shape)}")
        if arr.shape[1] != self.latent_dim:
            raise DataError(f"{name} has latent size {arr.shape[1]}, this decoder expects "
                            f"{self.latent_dim} (shape [N, {self.latent_dim}])")
        if arr.shape[0] > self.max_batch:
            raise DataError(f"{name} has batch {arr.shape[0]} > max_batch={self.max_batch}; "
                            f"split it or raise max_batch")
        with np.errstate(over="ignore", invalid="ignore"):
            arr = arr.astype(np.float32, copy=False)
        if not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))[0].tolist()
            raise DataError(f"{name} contains NaN or Inf (first at index {bad}); "
                            f"float64 values beyond float32 range also become Inf")
        return np.ascontiguousarray(arr)

    def _code(self, z, name: str) -> np.ndarray:
        arr = self._as_batch(z, name)
        if np.asarray(z).ndim != 1:
            raise DataError(f"{name} must be one latent code of shape [{self.latent_dim}], "
                            f"got shape {list(np.shape(z))}")
        return arr[0]

    # -- decoding ------------------------------------------------------------------------------
    def labels(self, label, n: int, classes: int | None = None) -> np.ndarray | None:
        """int32 [n] labels for a call of n rows (``label``: one integer or n of them, in [0, classes)), or None
        for an unconditional export called without one; DataError for a missing, extra or bad label."""
        return check_labels(label, n, self._num_classes if classes is None else classes)

    def decode(self, z, output: str = "float", label=None) -> np.ndarray:
        """Latents [N, latent_dim] (or [latent_dim]) -> images [N, H, W, C]: float32 in [0, 1] or uint8.
        A class-conditional export needs ``label``: one integer in [0, num_classes) or N of them."""
        if output not in OUTPUTS:
            raise DataError(f"output must be 'float' or 'uint8', got {output!r}")
        batch = self._as_batch(z)
        labels = self.labels(label, batch.shape[0])

        def feeds(start, stop):
            feed = {contract.LATENT_INPUT: batch[start:stop]}
            if labels is not None:
                feed[contract.LABEL_INPUT] = labels[start:stop]
            return feed

        if batch.shape[0] == 0:
            images = np.zeros((0, *self.image_shape), np.float32)
        else:
            session = self._session_for(batch.shape[0])
            if batch.shape[0] <= self.chunk:
                images = session.run([contract.IMAGE_OUTPUT], feeds(0, batch.shape[0]))[0]
            else:
                images = np.empty((batch.shape[0], *self.image_shape), np.float32)
                for start in range(0, batch.shape[0], self.chunk):
                    part = feeds(start, start + self.chunk)
                    images[start:start + len(part[contract.LATENT_INPUT])] = session.run(
                        [contract.IMAGE_OUTPUT], part)[0]
            lo, hi = self._value_range
            if (lo, hi) != (0.0, 1.0):
                images = ((images - lo) / (hi - lo)).astype(np.float32)
        return to_uint8(images) if output == "uint8" else images

    def _check_count(self, name: str, value, low: int) -> int:
        """An integer count in [low, the number of images that fit MAX_OUTPUT_BYTES] (checked before any
        allocation: a huge count is an error, not a MemoryError)."""
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)) or (
                isinstance(value, (float, np.floating)) and not float(value).is_integer()):
            raise DataError(f"{name} must be an integer, got {value!r}")
        value = int(value)
        limit = max(1, MAX_OUTPUT_BYTES // (4 * math.prod(self.image_shape)))
        if value < low:
            raise DataError(f"{name} must be >= {low}{' (both end points)' if name == 'steps' else ''}, got {value}")
        if value > limit:
            raise DataError(f"{name} must be in [{low}, {limit}] (at most {MAX_OUTPUT_BYTES >> 20} MiB of "
                            f"float32 images of {'x'.join(map(str, self.image_shape))}), got {value}")
        return value

    def noise(self, n: int, seed=None, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(temperature * eps [n, d], u [n]) from ``keras_vae.sampling.noise.portable_noise(seed, n, d)``.

        ``seed=None`` draws a fresh seed (not reproducible); otherwise an integer in [0, 2^32).
        """
        n = self._check_count("n", n, 1)
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.integer, np.floating)) \
                or not (math.isfinite(temperature) and temperature >= 0):
            raise DataError(f"temperature must be a finite number >= 0, got {temperature!r}")
        seed = int(np.random.default_rng().integers(SEED_LIMIT)) if seed is None else check_seed(seed)
        eps, u = portable_noise(seed, n, self.latent_dim)
        return (eps * np.float32(temperature)).astype(np.float32), u

    def sample_latents(self, n: int, seed=None, temperature: float = 1.0, label=None) -> np.ndarray:
        """n latents float32 [n, latent_dim] from the exported sampler (z = m_k + L_k (temperature eps));
        the prior N(0, temperature^2 I) when there is no sampler.onnx. Same seed, same latents as
        ``LatentSampler.sample(n, seed)`` of the run (at temperature 1).

        ``n``: an integer >= 1, at most the images that fit ``MAX_OUTPUT_BYTES`` (DataError otherwise, before
        anything is drawn). sampler.onnx runs on at most ``max_batch`` codes per call (by default
        ``contract.MAX_BATCH``, the bound of the SavedModel ``sample`` signature): its Gather of the Cholesky
        factors is [n, d, d] float32, 1.4 GB for the 21,845 codes of a 1 GiB celeba-64 draw in one call. The
        rule is row-wise, so the pieces give the latents one call would.

        ``label`` (a class-conditional export; one integer or n): z from that class's sampler (the run's class
        sampler, or N(0, I) where it had none), as ``keras-vae sample RUN --class K`` draws them."""
        from keras_vae.sampling.samplers import check_latent_range

        n = self._check_count("n", n, 1)
        self.labels(label, n, max(self._num_classes, self._sampler_classes))  # a bad or missing label: before drawing
        with np.errstate(over="ignore"):
            eps, u = self.noise(n, seed, temperature)
        labels = self.labels(label, n, self._sampler_classes) if self._sampler_classes else None
        if self._sampler is None:
            z = eps
        else:
            z = np.empty_like(eps)
            for start in range(0, len(eps), self.max_batch):
                stop = start + self.max_batch
                feed = {contract.SAMPLER_EPS_INPUT: eps[start:stop], contract.SAMPLER_U_INPUT: u[start:stop]}
                if labels is not None:
                    feed[contract.LABEL_INPUT] = labels[start:stop]
                z[start:stop] = self._sampler.run([contract.LATENT_OUTPUT], feed)[0]
        check_latent_range(z)  # never decode infinite or overflowing latents into a picture
        return z

    def sample(self, n: int, seed=None, temperature: float = 1.0, output: str = "float", label=None) -> np.ndarray:
        """Decode n seeded samples of the exported sampler (see ``sample_latents``; split into max_batch chunks);
        a class-conditional export decodes them with ``label`` (one integer, or n)."""
        z = self.sample_latents(n, seed, temperature, label=label)
        labels = self.labels(label, len(z)) if self._num_classes else None  # else the label chose the sampler only
        parts = [self.decode(z[i:i + self.max_batch], output,
                             label=None if labels is None else labels[i:i + self.max_batch])
                 for i in range(0, len(z), self.max_batch)]
        return np.concatenate(parts, axis=0)

    def interpolate(self, z0, z1, steps: int, output: str = "float", label=None) -> np.ndarray:
        """Decode (1 - a) z0 + a z1 for a in linspace(0, 1, steps) -> [steps, H, W, C]."""
        a0, a1 = self._code(z0, "z0"), self._code(z1, "z1")
        steps = self._check_count("steps", steps, 2)
        if steps > self.max_batch:
            raise DataError(f"steps {steps} > max_batch={self.max_batch}: ask for fewer steps or raise max_batch")
        alpha = np.linspace(0.0, 1.0, steps, dtype=np.float32)[:, None]
        return self.decode((1.0 - alpha) * a0 + alpha * a1, output, label=label)

    def traverse(self, z, dim: int, values, output: str = "float", label=None) -> np.ndarray:
        """Decode z + v e_dim for each v in values (one latent dimension swept) -> [len(values), H, W, C]."""
        code = self._code(z, "z")
        if isinstance(dim, bool) or not (isinstance(dim, (int, np.integer)) and 0 <= dim < self.latent_dim):
            raise DataError(f"dim must be an integer in [0, {self.latent_dim}), got {dim!r}")
        vals = self._as_values(values)
        if len(vals) > self.max_batch:
            raise DataError(f"{len(vals)} values > max_batch={self.max_batch}: pass fewer values")
        batch = np.repeat(code[None, :], len(vals), axis=0)
        batch[:, dim] += vals
        return self.decode(batch, output, label=label)

    @staticmethod
    def _as_values(values) -> np.ndarray:
        vals = _asarray(values, "values")
        if vals.ndim != 1 or vals.size == 0 or not (np.issubdtype(vals.dtype, np.floating)
                                                     or np.issubdtype(vals.dtype, np.integer)):
            raise DataError(f"values must be a non-empty 1-D list of numbers, got {short(values)}")
        vals = vals.astype(np.float32)
        if not np.all(np.isfinite(vals)):
            raise DataError("values contain NaN or Inf")
        return vals


def check_labels(label, n: int, classes: int) -> np.ndarray | None:
    """int32 [n] labels for a call of n rows of a graph with ``classes`` classes (``label``: one integer or n of
    them, in [0, classes)), or None for an unconditional graph called without one; DataError (one line) for a
    missing, extra or bad label."""
    if not classes:
        if label is not None:
            raise DataError("this export is not class-conditional (it takes no label): drop label=, or export "
                            "a class-conditional run (keras-vae train --conditional)")
        return None
    if label is None:
        raise DataError(f"this export is class-conditional ({classes} classes): pass label=K, an integer in "
                        f"[0, {classes}) (or one per row)")
    values = _asarray(label, "label")
    if values.ndim == 0:
        values = np.full(n, values)
    if values.shape != (n,) or values.dtype == bool or not (
            np.issubdtype(values.dtype, np.integer) or (np.issubdtype(values.dtype, np.floating)
                                                        and np.all(np.mod(values, 1) == 0))):
        raise DataError(f"label must be one integer in [0, {classes}) or {n} of them (one per row), got "
                        f"{short(label)}")
    if values.size and (values.min() < 0 or values.max() >= classes):
        bad = values.min() if values.min() < 0 else values.max()
        raise DataError(f"label {bad:g} is out of range: this export has {classes} classes, pass an integer in "
                        f"[0, {classes})")
    return np.ascontiguousarray(values.astype(np.int32))


def _label_classes(path: Path, meta: dict, inputs) -> int:
    """K of a graph that takes ``label`` int32 [N] (from its ``keras_vae.num_classes`` metadata), 0 for one that
    takes none; ArtifactError when the input and the metadata disagree."""
    names = [i.name for i in inputs]
    declared = meta.get(contract.META_NUM_CLASSES)
    if contract.LABEL_INPUT not in names:
        if declared not in (None, "0"):
            raise ArtifactError(f"{path} says it has {declared} classes ({contract.META_NUM_CLASSES}) but takes no "
                                f"{contract.LABEL_INPUT!r} input: the file is corrupt -- re-export the model")
        return 0
    node = inputs[names.index(contract.LABEL_INPUT)]
    try:
        classes = int(declared)
    except (TypeError, ValueError):
        classes = 0
    if classes < 1 or node.type != "tensor(int32)" or len(node.shape) != 1:
        raise ArtifactError(f"{path} takes {contract.LABEL_INPUT!r} ({node.type}, shape {list(node.shape)}) with "
                            f"{contract.META_NUM_CLASSES}={declared!r}: a keras-vae export takes int32 [N] labels "
                            "and names its class count -- re-export the model")
    return classes


def sample_grid(onnx_path, n: int, seed, out_png, temperature: float = 1.0, cols: int | None = None,
                providers=None, verify: bool = True) -> Path:
    """Decode n seeded samples of the export's sampler (``OnnxDecoder.sample``) from ``onnx_path`` (the
    decoder.onnx or its export folder) and write them as one grid image (PNG, or JPEG for a .jpg/.jpeg
    name; no TensorFlow). ``verify`` as in ``OnnxDecoder``."""
    decoder = OnnxDecoder(onnx_path, providers=providers, verify=verify)
    images = decoder.sample(n, seed=seed, temperature=temperature, output="uint8")
    return save_grid(images, out_png, cols=cols)


def _verified_beside(path: Path, name: str, verify: bool) -> Path | None:
    """The export file ``name`` beside ``path`` when it is there (checked against export.json's listing, and
    with ``verify`` its SHA-256); None when the export has no such file."""
    json_path = path.parent / name
    check_listed_present(path.parent, name, PRIOR_ON_PURPOSE, verify)
    if not json_path.is_file():
        return None
    if verify:
        verify_export_json(json_path)
    return json_path
