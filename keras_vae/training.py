"""One training run: data -> model.fit -> run folder (model, config, metrics, figures, logs).

``train(config, out_dir)`` is what ``keras-vae train`` calls; Python users may call it too, or
build the pieces themselves (``make_datasets``, ``build_model``, ``model.fit``).
An interrupted run resumes when started again with the same ``out_dir`` (keras_vae.checkpoint);
keras_vae.run_lifecycle keeps the folder consistent (lock, status, replacement with --force).
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
from keras_vae import run_lifecycle as lifecycle
from keras_vae.checkpoint import RunCheckpoint, has_checkpoint
from keras_vae.config import RunConfig
from keras_vae.data import make_datasets
from keras_vae.errors import ArtifactError
from keras_vae.metrics import likelihood_evaluation, model_diagnostics, reconstruction_error
from keras_vae.models import build_model
from keras_vae.plots import (plot_interpolations, plot_latent, plot_reconstructions, plot_samples,
                             plot_traversals)
from keras_vae.runs import CONFIG_FILE, METRICS_FILE, MODEL_FILE, atomic_path, read_json, write_json

log = logging.getLogger(__name__)
DIAGNOSTIC_EXAMPLES = 500


@dataclass
class RunResult:
    """What a finished run produced: its folder, the trained model and the metrics.json content."""

    out_dir: Path
    model: Any
    metrics: dict[str, Any] = field(default_factory=dict)


class EpochRecorder(keras.callbacks.Callback):
    """Per epoch: Keras' train/validation logs plus posterior diagnostics on validation images,
    appended to ``metrics["epochs"]`` and written to metrics.json (so partial runs keep their numbers).
    A diverged epoch is recorded without diagnostics (its weights are not finite)."""

    def __init__(self, metrics: dict[str, Any], images: np.ndarray, path: Path,
                 checkpoint: RunCheckpoint | None = None) -> None:
        super().__init__()
        self.record, self.images, self.path, self.checkpoint = metrics, images, path, checkpoint

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = {k: float(v) for k, v in (logs or {}).items()}
        diverged = self.checkpoint is not None and self.checkpoint.divergence is not None
        entry = {
            "epoch": epoch + 1,
            "train": {k: v for k, v in logs.items() if not k.startswith("val_")},
            "validation": {k[4:]: v for k, v in logs.items() if k.startswith("val_")},
            "diagnostics": None if diverged else model_diagnostics(self.model, self.images),
        }
        epochs = [e for e in self.record["epochs"] if e["epoch"] < entry["epoch"]]
        self.record["epochs"] = epochs + [entry]
        write_json(self.path, self.record)


class TrainingDiverged(ArtifactError):
    """A non-finite loss stopped training; the last good checkpoint (if any) is the run's model.keras."""


def train(config: RunConfig, out_dir: str | Path, *, verbose: int | str = "auto", force: bool = False,
          restart: bool = False, callbacks: Sequence[keras.callbacks.Callback] = ()) -> RunResult:
    """Train the model ``config`` describes and write the run folder ``out_dir``; returns a RunResult.

    An unfinished run in ``out_dir`` resumes from its checkpoint (same configuration required;
    ``restart=True`` discards it). A finished run is replaced only with ``force=True``, and only
    once the new run has finished (it trains in ``out_dir/.keras-vae-replacement`` meanwhile).
    See keras_vae.run_lifecycle for the folder's states and lock.
    """
    out_dir = Path(out_dir)
    with lifecycle.claim(out_dir) as created:
        state = lifecycle.inspect(out_dir)
        if state == "replacing":
            lifecycle.finish_interrupted_replacement(out_dir)
            state = "finished"
        if state not in ("finished", "diverged"):
            return _train_into(config, out_dir, created, verbose=verbose, restart=restart, callbacks=callbacks)
        if not force:
            raise ArtifactError(f"{str(out_dir)!r} already holds a {state} run: choose another --out or pass "
                                "--force to replace it")
        replacement = out_dir / lifecycle.REPLACEMENT_DIR
        if (lifecycle.read_status(replacement) or {}).get("status") in ("finished", "diverged"):
            shutil.rmtree(replacement)  # a replacement that diverged (or never got moved): start it over
        result = _train_into(config, replacement, not replacement.exists(), verbose=verbose, restart=restart,
                             callbacks=callbacks)
        lifecycle.replace_run(out_dir, replacement)
        result.out_dir = out_dir
        return result


def _train_into(config: RunConfig, out_dir: Path, created: bool, *, verbose, restart: bool,
                callbacks: Sequence[keras.callbacks.Callback]) -> RunResult:
    """One run in a claimed folder: resume or start, fit, then model, metrics, figures, status."""
    backup = out_dir / lifecycle.BACKUP_DIR
    if restart:
        lifecycle.clear_run(out_dir)
    resuming = has_checkpoint(backup)
    if resuming:
        lifecycle.check_same_config(out_dir, config.to_dict())
    else:
        lifecycle.clear_run(out_dir)  # an unfinished start with nothing to resume: begin afresh
    started = time.time()
    keras.utils.set_random_seed(config.train.seed)
    previous_policy = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(config.train.precision)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        data = make_datasets(config.data, image_shape=config.model.image_shape,
                             value_range=config.model.value_range, batch_size=config.train.batch_size,
                             seed=config.train.seed)
        val_images, val_labels = data.validation_arrays()
        model = build_model(config)
        model.compile_for_training(config.train)
        if not resuming:
            write_json(out_dir / CONFIG_FILE, config.to_dict())
        lifecycle.write_status(out_dir, "training")
        metrics: dict[str, Any] = {"package_version": __version__, "status": "training", "data": data.description,
                                   "num_train": data.num_train, "num_validation": data.num_validation,
                                   "epochs": _previous_epochs(out_dir) if resuming else []}
        checkpoint = RunCheckpoint(backup)
        train_ds = data.train.repeat() if config.train.steps_per_epoch else data.train
        model.fit(
            train_ds,
            validation_data=data.validation,
            epochs=config.train.epochs,
            steps_per_epoch=config.train.steps_per_epoch,
            shuffle=False,  # the tf.data pipeline shuffles (seeded)
            verbose=verbose,
            callbacks=[
                checkpoint,
                keras.callbacks.TensorBoard(str(out_dir / "logs"), write_graph=False),
                EpochRecorder(metrics, val_images[:DIAGNOSTIC_EXAMPLES], out_dir / METRICS_FILE, checkpoint),
                *callbacks,
            ],
        )
        if checkpoint.divergence is not None:
            _keep_last_good(model, checkpoint, metrics, out_dir)
        with atomic_path(out_dir / MODEL_FILE) as tmp:
            model.save(tmp)
        metrics["final"] = _final_evaluation(model, config, val_images)
        metrics["resumed"] = resuming
        metrics["train_seconds"] = round(time.time() - started, 2)
        _write_figures(model, config, val_images, val_labels, out_dir)
        metrics["status"] = "finished"
        write_json(out_dir / METRICS_FILE, metrics)
        lifecycle.write_status(out_dir, "finished")  # last: only now does the run count as finished
        shutil.rmtree(backup, ignore_errors=True)
    except TrainingDiverged:
        raise  # its folder holds metrics.json with the divergence (and the last good model, if any)
    except BaseException:
        if not has_checkpoint(backup) and not (out_dir / MODEL_FILE).exists():
            lifecycle.discard_failed_start(out_dir, created)  # nothing to resume: leave no half folder
        raise
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
    log.info("run written to %s in %.1f s", out_dir, time.time() - started)
    return RunResult(out_dir=out_dir, model=model, metrics=metrics)


def _keep_last_good(model, checkpoint: RunCheckpoint, metrics: dict[str, Any], out_dir: Path) -> None:
    """After a divergence: model.keras = the last good checkpoint, status 'diverged'; raises TrainingDiverged."""
    d = checkpoint.divergence
    where = (f"step {d['step']} of epoch {d['epoch']}" if isinstance(d["step"], int)
             else f"the {d['step']} of epoch {d['epoch']}")
    what = "the weights became non-finite" if d["term"] == "weights" else f"loss term {d['term']!r} became {d['value']}"
    metrics["status"] = "diverged"
    metrics["divergence"] = d
    epoch = checkpoint.restore()
    if epoch is None:
        write_json(out_dir / METRICS_FILE, metrics)
        lifecycle.write_status(out_dir, "diverged", divergence=d)
        shutil.rmtree(out_dir / lifecycle.BACKUP_DIR, ignore_errors=True)
        raise TrainingDiverged(
            f"training diverged: {what} at {where}, before any epoch finished, so no model was saved: "
            "lower --learning-rate or check the data")
    with atomic_path(out_dir / MODEL_FILE) as tmp:
        model.save(tmp)
    metrics["kept_epoch"] = epoch
    write_json(out_dir / METRICS_FILE, metrics)
    lifecycle.write_status(out_dir, "diverged", divergence=d, kept_epoch=epoch)
    shutil.rmtree(out_dir / lifecycle.BACKUP_DIR, ignore_errors=True)
    raise TrainingDiverged(
        f"training diverged: {what} at {where}; the last good checkpoint (after epoch {epoch}) is saved as "
        f"{str(out_dir / MODEL_FILE)!r}. Lower --learning-rate or check the data, then train again with --force")


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
