"""Image grids and the float -> uint8 rule (NumPy; Pillow only inside ``save_grid``; no TensorFlow).

``make_grid`` is the one grid layout: the figures of a run (``keras_vae.evaluation.plots``), the
TensorBoard images, the CLI's PNGs and the ONNX consumers all tile with it. ``to_uint8`` is the one
float -> uint8 rule used by ``OnnxDecoder``, the PNG writer, and mirrored exactly by the Node and
browser embeds: ``floor(clip(x, 0, 1) * 255 + 0.5)`` computed in float64.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from keras_vae.errors import ArtifactError, DataError
from keras_vae.utils.files import atomic_path

MAX_GRID_BYTES = 1 << 30  # one grid image (uint8) at most 1 GiB
# by the file name's extension (case-insensitive): Pillow format and mode conversions
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}


def to_uint8(images) -> np.ndarray:
    """float images in [0, 1] -> uint8 via floor(clip(x, 0, 1) * 255 + 0.5); uint8 passes through."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.floating):
        raise DataError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
    return np.floor(np.clip(images.astype(np.float64), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def make_grid(images, cols: int | None = None, pad: int = 0, pad_value: int = 0) -> np.ndarray:
    """Tile NHWC images (uint8 or float in [0, 1], converted by ``to_uint8``) into one uint8 array
    [rows*(H+pad)-pad, cols*(W+pad)-pad, C], row-major: image i sits in row i // cols, column i % cols.

    ``cols`` defaults to ceil(sqrt(N)) and is capped at N; rows = ceil(N / cols). Empty cells and the
    ``pad`` pixels between tiles (none around the border) get ``pad_value`` (0 black, 255 white).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise DataError(f"images must be NHWC with 1, 3 or 4 channels, got shape {images.shape}")
    n, h, w, c = images.shape
    if n == 0:
        raise DataError("no images to write (batch of 0)")
    cols = int(cols) if cols else math.ceil(math.sqrt(n))
    if cols < 1:
        raise DataError(f"cols must be >= 1, got {cols}")
    if not 0 <= int(pad) <= max(h, w):
        raise DataError(f"pad must be in [0, {max(h, w)}] pixels, got {pad}")
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    grid_bytes = (rows * h + (rows - 1) * pad) * (cols * w + (cols - 1) * pad) * c
    if grid_bytes > MAX_GRID_BYTES:
        raise DataError(f"a grid of {n} images of {h}x{w}x{c} needs {grid_bytes / 1e6:.0f} MB, more than "
                        f"{MAX_GRID_BYTES / 1e6:.0f} MB: write fewer images")
    tiles = to_uint8(images)
    grid = np.full((rows * h + (rows - 1) * pad, cols * w + (cols - 1) * pad, c), pad_value, np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        y, x = r * (h + pad), q * (w + pad)
        grid[y:y + h, x:x + w] = tiles[i]
    return grid


def save_grid(images, path, cols: int | None = None, pad: int = 0) -> Path:
    """Write NHWC images as one grid image at ``path`` atomically (temp file, then os.replace).

    The format follows the extension: ``.png`` (lossless) or ``.jpg``/``.jpeg`` (JPEG, quality 95, 4:4:4,
    alpha dropped); the file gets the usual mode (0o666 less the umask), not mkstemp's 0600.
    """
    from PIL import Image

    path = Path(path)
    if path.is_dir():
        raise ArtifactError(f"cannot write {path}: it is a folder, pass a file name such as {path / 'grid.png'}")
    fmt = IMAGE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ArtifactError(f"cannot write {path}: unknown image type {path.suffix or '(no extension)'!r}, "
                            f"use a name ending in {', '.join(sorted(IMAGE_FORMATS))}")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ArtifactError(f"cannot write {path}: folder {parent} does not exist")
    grid = make_grid(images, cols=cols, pad=pad)
    mode = {1: "L", 3: "RGB", 4: "RGBA"}[grid.shape[-1]]
    image = Image.fromarray(np.ascontiguousarray(grid[..., 0] if mode == "L" else grid))
    options = {}
    if fmt == "JPEG":
        options = {"quality": 95, "subsampling": 0}  # 4:4:4: tiles have sharp colour edges
        if image.mode == "RGBA":
            image = image.convert("RGB")
    with atomic_path(path, suffix=".tmp") as tmp:
        image.save(tmp, format=fmt, **options)
    return path


ARRAY_SUFFIX = ".npz"


def save_images_npz(images, path, **metadata) -> Path:
    """Write NHWC images as uint8 [n, height, width, channels] under the key ``images`` of an ``.npz``
    (``to_uint8``'s rounding), with each ``metadata`` value beside it, atomically (temp file, then rename)."""
    path = Path(path)
    images = to_uint8(images)
    if images.ndim != 4:
        raise DataError(f"images must be [n, height, width, channels], got shape {images.shape}")
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, images=images, **{key: np.asarray(value) for key, value in metadata.items()})
    return path
