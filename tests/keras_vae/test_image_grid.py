"""The one grid layout (keras_vae.utils.images.make_grid) against a NumPy reference built by reshaping."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from keras_vae.errors import DataError
from keras_vae.utils.images import make_grid, to_uint8

ROOT = Path(__file__).resolve().parents[2]


def reference_grid(tiles: np.ndarray, cols: int, pad: int, pad_value: int) -> np.ndarray:
    """Row-major tiling by reshape/transpose: pad every tile on its bottom and right, fill the last row
    with blank tiles, lay the [rows, cols] block out, then crop the trailing gap."""
    n, h, w, c = tiles.shape
    rows = -(-n // cols)
    padded = np.full((rows * cols, h + pad, w + pad, c), pad_value, np.uint8)
    padded[:n, :h, :w] = tiles
    grid = padded.reshape(rows, cols, h + pad, w + pad, c).transpose(0, 2, 1, 3, 4)
    grid = grid.reshape(rows * (h + pad), cols * (w + pad), c)
    return grid[:rows * (h + pad) - pad, :cols * (w + pad) - pad]


@pytest.mark.parametrize("n, cols, pad, pad_value, channels", [
    (16, 4, 1, 255, 1),   # the figures' and TensorBoard's square grid with white gaps
    (10, 4, 0, 0, 1),     # the CLI's PNG grid: empty cells in the last row
    (7, 3, 2, 128, 3),
    (1, 1, 1, 255, 4),
    (9, 9, 1, 255, 1),    # one strip (interpolations)
])
def test_grid_layout_matches_the_reshape_reference(n, cols, pad, pad_value, channels):
    images = np.random.default_rng(n).uniform(-0.2, 1.2, size=(n, 5, 3, channels)).astype(np.float32)
    grid = make_grid(images, cols, pad=pad, pad_value=pad_value)
    assert grid.dtype == np.uint8
    np.testing.assert_array_equal(grid, reference_grid(to_uint8(images), cols, pad, pad_value))


def test_default_columns_are_ceil_sqrt_and_capped_at_n():
    images = np.ones((5, 2, 2, 1), np.uint8)
    assert make_grid(images).shape == (2 * 2, 3 * 2, 1)  # ceil(sqrt(5)) = 3 columns, 2 rows
    assert make_grid(images, cols=50).shape == (2, 5 * 2, 1)  # more columns than images: one row of 5
    with pytest.raises(DataError, match="no images"):
        make_grid(np.zeros((0, 2, 2, 1)))


def test_images_module_imports_neither_tensorflow_nor_matplotlib():
    code = ("import sys, keras_vae.utils.images\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'tensorflow', 'keras', 'matplotlib', 'PIL'}))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stdout + proc.stderr
