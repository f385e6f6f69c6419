"""Small writers for application outputs: CSV tables, written atomically."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from keras_vae.utils.files import atomic_path


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return repr(float(value))  # shortest round-trip text: a reader gets the same float back
    return str(value.item() if isinstance(value, np.generic) else value)


def write_csv(path: str | Path, columns: Mapping[str, Sequence]) -> Path:
    """Write equal-length columns as a CSV with a header row, atomically; floats keep full precision."""
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"columns of different lengths: {lengths}")
    path = Path(path)
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(list(columns))
            for row in zip(*columns.values()):
                writer.writerow([_cell(v) for v in row])
    return path
