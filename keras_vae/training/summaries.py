"""TensorBoard beyond Keras' per-epoch scalars: what the model does, every N epochs.

Written to ``RUN_DIR/logs/model`` (beside Keras' ``logs/train`` and ``logs/validation``), at the
same step as Keras' epoch scalars (the 0-based epoch):

    images/samples           decoded z ~ N(0, I) from a fixed seed (the same z every time)
    images/reconstructions   validation inputs (top row) over decode(E[z|x]) (bottom row)
    images/interpolations    decodes of (1 - a) z1 + a z2 between validation codes, a = 0..1
    codes/mean, codes/log_variance, codes/mean_dim_<j>   histograms of the posterior parameters
    diagnostics/<name>       the scalar posterior diagnostics of metrics.json (active units, ...)
    schedules/<name>         KL weight, adversarial weight and learning rates
    final/<name>             the end-of-run evaluation (reconstruction MAE, ELBO, IWAE log p(x))

``tensorboard --logdir runs`` shows every run side by side.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

SUMMARY_DIR = "model"
HISTOGRAM_DIMS = 8  # per-dimension histograms for the first latent dimensions


def _writer(log_dir: str | Path):
    import tensorflow as tf

    return tf.summary.create_file_writer(str(Path(log_dir) / SUMMARY_DIR))


def _scalars(prefix: str, values: dict[str, Any], step: int) -> None:
    import tensorflow as tf

    for name, value in (values or {}).items():  # None: a diverged epoch has no diagnostics
        if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            tf.summary.scalar(f"{prefix}/{name}", float(value), step=step)


class ModelSummaries(keras.callbacks.Callback):
    """Images, code histograms, diagnostics and schedules in TensorBoard every ``every`` epochs (and the last).

    ``record`` is the run's metrics dict; its newest epoch entry supplies the diagnostics and
    schedules, so place this callback after the one that fills it (``EpochRecorder``)."""

    def __init__(self, log_dir: str | Path, images: np.ndarray, record: dict[str, Any] | None = None,
                 every: int = 1, seed: int = 0, n_samples: int = 16, n_images: int = 8) -> None:
        super().__init__()
        self.log_dir, self.every, self.seed = Path(log_dir), int(every), int(seed)
        self.images = np.asarray(images[:512])
        self.record = record
        self.n_samples, self.n_images = int(n_samples), int(n_images)
        self._writer = None

    def _due(self, epoch: int) -> bool:
        last = self.params.get("epochs") if self.params else None
        return self.every > 0 and ((epoch + 1) % self.every == 0 or (last is not None and epoch + 1 == last))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        import tensorflow as tf

        if self._writer is None:
            self._writer = _writer(self.log_dir)
        entry = (self.record or {}).get("epochs", [{}])[-1] if (self.record or {}).get("epochs") else {}
        with self._writer.as_default():
            _scalars("diagnostics", entry.get("diagnostics", {}), epoch)
            _scalars("schedules", entry.get("schedules", {}), epoch)
            diverged = bool(entry) and entry.get("diagnostics", {}) is None  # non-finite weights: nothing to draw
            if self._due(epoch) and not diverged:
                for name, grid in model_images(self.model, self.images, self.seed, self.n_samples,
                                               self.n_images).items():
                    tf.summary.image(f"images/{name}", grid[None], step=epoch)
                mean, log_var = (np.asarray(t) for t in self.model.encode(self.images))
                tf.summary.histogram("codes/mean", mean, step=epoch)
                tf.summary.histogram("codes/log_variance", log_var, step=epoch)
                for j in range(min(HISTOGRAM_DIMS, mean.shape[1])):
                    tf.summary.histogram(f"codes/mean_dim_{j}", mean[:, j], step=epoch)
        self._writer.flush()

    def on_train_end(self, logs: dict | None = None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def model_images(model, images: np.ndarray, seed: int = 0, n_samples: int = 16,
                 n_images: int = 8) -> dict[str, np.ndarray]:
    """{"samples", "reconstructions", "interpolations"}: uint8 [H', W', C] grids (``make_grid``, 1-pixel
    white gaps)."""
    from keras_vae.utils.images import make_grid

    samples = np.asarray(model.to_unit(model.sample(n_samples, seed=seed)))
    x = images[:n_images]
    recon = np.asarray(model.to_unit(model.reconstruct(x)))
    both = np.concatenate([np.asarray(model.to_unit(x)), recon])
    mean = np.asarray(model.encode(images[:2])[0])
    alphas = np.linspace(0.0, 1.0, n_images, dtype=np.float32)[:, None]
    strip = np.asarray(model.to_unit(model.decode((1.0 - alphas) * mean[0] + alphas * mean[-1])))
    cols = int(np.ceil(np.sqrt(n_samples)))
    return {"samples": make_grid(samples, cols, pad=1, pad_value=255),
            "reconstructions": make_grid(both, cols=len(x), pad=1, pad_value=255),
            "interpolations": make_grid(strip, cols=n_images, pad=1, pad_value=255)}


def visual_summaries(config, log_dir: str | Path, images: np.ndarray,
                     record: dict[str, Any] | None = None) -> list[keras.callbacks.Callback]:
    """The callbacks ``train`` adds for ``config`` (none when ``train.summary_every`` is 0)."""
    every = config.train.summary_every
    return [ModelSummaries(log_dir, images, record, every=every, seed=config.train.seed)] if every else []


def write_final_summaries(log_dir: str | Path, metrics: dict[str, Any], step: int) -> None:
    """The end-of-run evaluation of metrics.json as ``final/...`` scalars at ``step``."""
    final = metrics.get("final", {})
    values = {"reconstruction_mae": final.get("reconstruction_mae")}
    for key in ("elbo", "log_likelihood", "nll"):
        values[key] = final.get("validation", {}).get(key)
    writer = _writer(log_dir)
    with writer.as_default():
        _scalars("final", {k: v for k, v in values.items() if v is not None}, step)
    writer.close()
