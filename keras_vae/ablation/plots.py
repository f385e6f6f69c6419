"""Figures of ``keras-vae ablate``: one sample grid per variant and sampler, and all of them in one figure
(rows: variants; columns: the aggregate-posterior sampler, the prior N(0, I)). Plain matplotlib Figures
written atomically, as in ``keras_vae.evaluation.plots``."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from keras_vae.evaluation.plots import _grid_figure, _save, _show
from keras_vae.utils.images import make_grid


def plot_sample_grid(images: np.ndarray, path: str | Path, title: str) -> Path:
    """A square-ish grid of images [N, H, W, C] in [0, 1] with a title."""
    cols = int(np.ceil(np.sqrt(len(images))))
    return _save(_grid_figure(make_grid(images, cols, pad=1, pad_value=255), title), path)


def plot_ablation(grids: Mapping[str, Mapping[str, np.ndarray]], path: str | Path,
                  columns: Sequence[tuple[str, str]], title: str) -> Path:
    """One figure: a row per variant (``grids[variant][column] = images``), a column per
    ``(key, heading)`` of ``columns``; each cell is that variant's sample grid."""
    rows = list(grids)
    fig = Figure(figsize=(3.2 * len(columns), 3.3 * len(rows) + 0.5), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), len(columns), squeeze=False))
    for r, variant in enumerate(rows):
        for c, (key, heading) in enumerate(columns):
            images = grids[variant][key]
            _show(axes[r, c], make_grid(images, int(np.ceil(np.sqrt(len(images)))), pad=1, pad_value=255))
            axes[r, c].set_title(f"{variant}: {heading}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)
