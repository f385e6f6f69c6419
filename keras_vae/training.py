"""One training run: data -> model.fit -> run folder (model, config, metrics, figures, logs).

``train(config, out_dir)`` is what ``keras-vae train`` calls; Python users may call it too, or
build the pieces themselves (``make_datasets``, ``build_model``, ``model.fit``).
An interrupted run resumes when started again with the same ``out_dir`` (BackupAndRestore).
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import keras
import numpy as np

from keras_vae import __version__
from keras_vae.config import RunConfig
from keras_vae.data import make_datasets
from keras_vae.errors import ArtifactError
from keras_vae.evaluation.report import end_of_training
from keras_vae.metrics import likelihood_evaluation, model_diagnostics, reconstruction_error
from keras_vae.models import build_model
from keras_vae.recipe import recipe_callbacks
from keras_vae.plots import (plot_interpolations, plot_latent, plot_reconstructions, plot_samples,
                             plot_traversals)
from keras_vae.runs import CONFIG_FILE, METRICS_FILE, MODEL_FILE, atomic_path, read_json, write_json

log = logging.getLogger(__name__)
BACKUP_DIR = "backup"
DIAGNOSTIC_EXAMPLES = 500


@dataclass
class RunResult:
    """What a finished run produced: its folder, the trained model and the metrics.json content."""

    out_dir: Path
    model: Any
    metrics: dict[str, Any] = field(default_factory=dict)


class EpochRecorder(keras.callbacks.Callback):
    """Per epoch: Keras' train/validation logs plus posterior diagnostics on validation images,
    appended to ``metrics["epochs"]`` and written to metrics.json (so partial runs keep their numbers)."""

    def __init__(self, metrics: dict[str, Any], images: np.ndarray, path: Path) -> None:
        super().__init__()
        self.record, self.images, self.path = metrics, images, path

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items()}
        entry = {
            "epoch": epoch + 1,
            "train": {k: v for k, v in logs.items() if not k.startswith("val_")},
            "validation": {k[4:]: v for k, v in logs.items() if k.startswith("val_")},
            "diagnostics": model_diagnostics(self.model, self.images),
        }
        epochs = [e for e in self.record["epochs"] if e["epoch"] < entry["epoch"]]
        self.record["epochs"] = epochs + [entry]
        write_json(self.path, self.record)


def _prepare_out_dir(out_dir: Path, force: bool) -> bool:
    """Create ``out_dir``; returns True when an interrupted run there will be resumed."""
    resuming = (out_dir / BACKUP_DIR).is_dir()
    if (out_dir / MODEL_FILE).exists() and not resuming:
        if not force:
            raise ArtifactError(
                f"{str(out_dir)!r} already holds a finished run: choose another --out or pass --force to replace it"
            )
        for name in (MODEL_FILE, METRICS_FILE):
            (out_dir / name).unlink(missing_ok=True)
        shutil.rmtree(out_dir / "logs", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    return resuming


def train(config: RunConfig, out_dir: str | Path, *, verbose: int | str = "auto", force: bool = False,
          callbacks: Sequence[keras.callbacks.Callback] = ()) -> RunResult:
    """Train the model ``config`` describes and write the run folder ``out_dir``; returns a RunResult."""
    out_dir = Path(out_dir)
    resuming = _prepare_out_dir(out_dir, force)
    started = time.time()
    keras.utils.set_random_seed(config.train.seed)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.train.precision)
    try:
        data = make_datasets(config.data, image_shape=config.model.image_shape,
                             value_range=config.model.value_range, batch_size=config.train.batch_size,
                             seed=config.train.seed)
        val_images, val_labels = data.validation_arrays()
        model = build_model(config)
        model.compile_for_training(config.train)
        write_json(out_dir / CONFIG_FILE, config.to_dict())
        metrics: dict[str, Any] = {"package_version": __version__, "data": data.description,
                                   "num_train": data.num_train, "num_validation": data.num_validation,
                                   "epochs": _previous_epochs(out_dir) if resuming else []}
        train_ds = data.train.repeat() if config.train.steps_per_epoch else data.train
        model.fit(
            train_ds,
            validation_data=data.validation,
            epochs=config.train.epochs,
            steps_per_epoch=config.train.steps_per_epoch,
            shuffle=False,  # the tf.data pipeline shuffles (seeded)
            verbose=verbose,
            callbacks=[
                keras.callbacks.BackupAndRestore(str(out_dir / BACKUP_DIR)),
                keras.callbacks.TensorBoard(str(out_dir / "logs"), write_graph=False),
                keras.callbacks.TerminateOnNaN(),
                EpochRecorder(metrics, val_images[:DIAGNOSTIC_EXAMPLES], out_dir / METRICS_FILE),
                *recipe_callbacks(config, metrics),
                *callbacks,
            ],
        )
        if model.stop_training and metrics["epochs"] and not np.isfinite(
                metrics["epochs"][-1]["train"].get("loss", np.nan)):
            raise ArtifactError(
                "training diverged (loss became NaN); lower --learning-rate or check the data. "
                f"Metrics so far are in {str(out_dir / METRICS_FILE)!r}"
            )
        with atomic_path(out_dir / MODEL_FILE) as tmp:
            model.save(tmp)
        metrics["final"] = _final_evaluation(model, config, val_images)
        metrics["evaluation"] = end_of_training(model, config, out_dir, step=config.train.epochs)
        metrics["resumed"] = resuming
        metrics["train_seconds"] = round(time.time() - started, 2)
        write_json(out_dir / METRICS_FILE, metrics)
        _write_figures(model, config, val_images, val_labels, out_dir)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    log.info("run written to %s in %.1f s", out_dir, time.time() - started)
    return RunResult(out_dir=out_dir, model=model, metrics=metrics)


def _previous_epochs(out_dir: Path) -> list[dict[str, Any]]:
    """Epoch records of the interrupted run being resumed (empty when it wrote none)."""
    try:
        return list(read_json(out_dir / METRICS_FILE).get("epochs", []))
    except ArtifactError:
        return []


def _final_evaluation(model, config: RunConfig, val_images: np.ndarray) -> dict[str, Any]:
    final: dict[str, Any] = {"reconstruction_mae": reconstruction_error(model, val_images)}
    if hasattr(model, "log_likelihood"):
        subset = val_images[: config.train.iwae_examples]
        final["validation"] = likelihood_evaluation(model, subset, num_samples=config.train.iwae_samples,
                                                    seed=config.train.seed)
    return final


def _write_figures(model, config: RunConfig, val_images, val_labels, out_dir: Path) -> None:
    seed = config.train.seed
    plot_samples(model, out_dir / "samples.png", n=64, seed=seed)
    plot_reconstructions(model, val_images, out_dir / "reconstructions.png")
    plot_latent(model, val_images, val_labels, out_dir / "latent.png")
    plot_interpolations(model, val_images, out_dir / "interpolations.png", seed=seed)
    plot_traversals(model, val_images, out_dir / "traversals.png")
