"""Arrays saved by NumPy as a source: ``npy:PATH`` with a .npy file (images only) or an .npz archive.

An .npz holds ``images`` (required) and optionally ``labels`` (one integer per image) and ``names``
(one string per image, e.g. the original file names; they travel into ``encode``/``anomaly``
outputs). Images are (N, H, W) or (N, H, W, C), uint8 in 0..255, bool, or float in [0, 1]; the
same checks as for in-memory arrays apply (rank, channels, dtype, range, NaN/Inf), with the file
named in every error. Files are read with ``allow_pickle=False`` (no code runs on load).
"""
from __future__ import annotations

import math
import os
import zipfile

import numpy as np

from keras_vae.data.arrays import array_source
from keras_vae.data.config import DataConfig
from keras_vae.data.pipeline import Source
from keras_vae.errors import DataError

IMAGES_KEY, LABELS_KEY, NAMES_KEY = "images", "labels", "names"
KNOWN_KEYS = (IMAGES_KEY, LABELS_KEY, NAMES_KEY)


def _data_problem(f, available: int) -> str | None:
    """What is wrong with the .npy stream ``f`` (positioned at its magic string) whose data part should
    follow the header within ``available`` bytes of the start: None when the data is all there (or the
    header is one np.load reports itself: unknown version, object arrays)."""
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            return None
    except (ValueError, OSError, EOFError):
        return None  # a broken header: np.load names it
    if dtype.hasobject:
        return None
    expected = math.prod(shape) * dtype.itemsize
    held = available - f.tell()
    if held >= expected:
        return None
    return (f"is truncated: its header declares an array of shape {tuple(shape)} and dtype {dtype} "
            f"({expected:,} bytes of data), but only {max(held, 0):,} bytes follow the header")


def _check_complete(path: str, magic: bytes) -> None:
    """DataError naming the file (and array) when a .npy, or an array inside an .npz, holds less data than
    its header declares: a truncated copy, not a request for too many images."""
    fix = "copy the file again or save it again with np.save / np.savez"
    if magic == b"\x93NUMPY":
        with open(path, "rb") as f:
            problem = _data_problem(f, os.path.getsize(path))
        if problem:
            raise DataError(f"{path} {problem}: {fix}")
        return
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith(".npy"):
                    with archive.open(info) as f:
                        problem = _data_problem(f, info.file_size)
                    if problem:
                        raise DataError(f"{path}: array {info.filename[:-4]!r} {problem}: {fix}")
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError):
        return  # an unreadable archive: np.load below reports it


def _read(path: str):
    if not os.path.exists(path):
        raise DataError(f"NumPy file {path} does not exist: check the path after 'npy:'")
    if os.path.isdir(path):
        raise DataError(f"{path} is a folder: 'npy:PATH' needs a .npy or .npz file (use 'folder:PATH' for image files)")
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic != b"\x93NUMPY" and not magic.startswith(b"PK"):
        raise DataError(f"cannot read {path} as a NumPy .npy/.npz file (no NumPy or zip header): "
                        "save it with np.save or np.savez")
    _check_complete(path, magic)
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        if "allow_pickle" in str(err) or "pickle" in str(err).lower():
            raise DataError(f"{path} holds Python objects (pickled), not numeric arrays: save plain arrays "
                            "with np.save / np.savez (images as uint8 or float32)") from None
        raise DataError(f"cannot read {path} as a NumPy .npy/.npz file ({err}): save it with np.save or np.savez") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"cannot read {path} as a NumPy .npy/.npz file ({type(err).__name__}: {err}): "
                        "save it with np.save or np.savez") from None


def load_npy(path: str) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...] | None]:
    """(images, labels or None, names or None) from a .npy/.npz file, after checking what it holds.

    Shapes and values are checked by ``array_source`` (``check_images``); here: the keys of an .npz,
    that labels are integers and names strings, one per image.
    """
    loaded = _read(path)
    if isinstance(loaded, np.ndarray):
        return loaded, None, None
    with loaded as archive:
        keys = list(archive.files)
        if IMAGES_KEY not in keys:
            raise DataError(f"{path} has no array named 'images' (it holds {', '.join(keys) or 'nothing'}): "
                            "save with np.savez(path, images=..., labels=...)")
        unknown = [k for k in keys if k not in KNOWN_KEYS]
        if unknown:
            raise DataError(f"{path} holds unexpected arrays {', '.join(unknown)}: "
                            f"only {', '.join(KNOWN_KEYS)} are read (rename or drop the others)")
        try:
            images = archive[IMAGES_KEY]
            labels = archive[LABELS_KEY] if LABELS_KEY in keys else None
            names = archive[NAMES_KEY] if NAMES_KEY in keys else None
        except ValueError:
            raise DataError(f"{path} holds Python objects (pickled), not numeric arrays: save plain arrays "
                            "(names as a NumPy string array, e.g. np.array(names, dtype=str))") from None
    n = len(images) if images.ndim else 0
    if labels is not None and (labels.shape != (n,) or labels.dtype.kind not in "iu"):
        raise DataError(f"{path}: 'labels' has shape {labels.shape} and dtype {labels.dtype}: "
                        f"expected {n} integers, one per image")
    if names is not None:
        if names.shape != (n,) or names.dtype.kind not in "US":
            raise DataError(f"{path}: 'names' has shape {names.shape} and dtype {names.dtype}: "
                            f"expected {n} strings, one per image")
        names = tuple(str(v) for v in names)
    return images, labels, names


def npy_source(path: str, config: DataConfig) -> Source:
    """Source over the arrays in ``path`` (.npy or .npz), split with the fixed split seed like every source."""
    path = os.path.expanduser(path)
    images, labels, names = load_npy(path)
    try:
        return array_source(images, labels, validation_fraction=config.validation_fraction,
                            max_examples=config.max_examples, name=f"NumPy file {path}",
                            exclude_labels=config.exclude_labels, names=names)
    except DataError as err:
        message = str(err)
        if path in message:
            raise
        raise DataError(f"{path}: {message}") from None
