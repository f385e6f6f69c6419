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
from keras_vae.metrics import likelihood_evaluation, model_diagnostics, reconstruction_error
from keras_vae.models import build_model
from keras_vae.plots import (plot_interpolations, plot_latent, plot_reconstructions, plot_samples,
                             plot_traversals)
from keras_vae.posterior_sampling import finish_training, remove_samplers
from keras_vae.progress import Reporter, RunClock, start_summary
from keras_vae.summaries import visual_summaries, write_final_summaries
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
        from keras_vae.schedules import split_logs

        entry = {
            "epoch": epoch + 1,
            **split_logs(logs, self.model),  # train, validation, schedules (beta, learning rates, ...)
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
        remove_samplers(out_dir)
        shutil.rmtree(out_dir / "logs", ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    return resuming


def train(config: RunConfig, out_dir: str | Path, *, verbose: int | str = "auto", force: bool = False,
          callbacks: Sequence[keras.callbacks.Callback] = (), report: Reporter | None = None) -> RunResult:
    """Train the model ``config`` describes and write the run folder ``out_dir``; returns a RunResult.

    ``report`` prints the start-of-run summary and each phase after the epochs (default: on stdout
    unless ``verbose`` is 0)."""
    out_dir = Path(out_dir)
    report = report if report is not None else Reporter(enabled=verbose not in (0, "0"))
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
        done_epochs = len(metrics["epochs"])
        clock = RunClock(metrics, _previous_seconds(out_dir) if resuming else 0.0, started=started)
        if resuming:
            report.line(f"resuming the interrupted run in {out_dir} from epoch {done_epochs + 1} of "
                        f"{config.train.epochs} ({done_epochs} done, {clock.previous_seconds:.0f} s spent before)")
        for line in start_summary(config, out_dir, data, model, first_epoch=done_epochs):
            report.line(line)
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
                clock,
                EpochRecorder(metrics, val_images[:DIAGNOSTIC_EXAMPLES], out_dir / METRICS_FILE),
                *visual_summaries(config, out_dir / "logs", val_images, metrics),
                *callbacks,
            ],
        )
        if model.stop_training and metrics["epochs"] and not np.isfinite(
                metrics["epochs"][-1]["train"].get("loss", np.nan)):
            raise ArtifactError(
                "training diverged (loss became NaN); lower --learning-rate or check the data. "
                f"Metrics so far are in {str(out_dir / METRICS_FILE)!r}"
            )
        with report.phase("BatchNorm statistics and latent samplers (training set)", 1) as bar:
            # BatchNorm statistics recomputed, latent samplers fitted and stored (keras_vae.posterior_sampling)
            posterior = finish_training(model, data.train, val_images, out_dir, seed=config.train.seed)
            bar.update()
        with report.phase("saving model.keras", 1) as bar:
            with atomic_path(out_dir / MODEL_FILE) as tmp:
                model.save(tmp)
            bar.update()
        metrics["final"] = {**_final_evaluation(model, config, val_images, report), **posterior,
                            "diagnostics": model_diagnostics(model, val_images[:DIAGNOSTIC_EXAMPLES])}
        metrics["resumed"] = resuming
        metrics["train_seconds"] = round(clock.elapsed(), 2)  # both parts of a resumed run
        metrics["elapsed_seconds"] = metrics["train_seconds"]
        write_json(out_dir / METRICS_FILE, metrics)
        _write_figures(model, config, val_images, val_labels, out_dir, report)
        write_final_summaries(out_dir / "logs", metrics, config.train.epochs)
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


def _previous_seconds(out_dir: Path) -> float:
    """Seconds the interrupted run being resumed had already spent (0 when unknown)."""
    try:
        return float(read_json(out_dir / METRICS_FILE).get("elapsed_seconds", 0.0))
    except (ArtifactError, TypeError, ValueError):
        return 0.0


def _final_evaluation(model, config: RunConfig, val_images: np.ndarray,
                      report: Reporter | None = None) -> dict[str, Any]:
    report = report or Reporter(enabled=False)
    with report.phase(f"reconstruction error ({len(val_images)} validation images)", 1) as bar:
        final: dict[str, Any] = {"reconstruction_mae": reconstruction_error(model, val_images)}
        bar.update()
    if hasattr(model, "log_likelihood"):
        subset = val_images[: config.train.iwae_examples]
        k = config.train.iwae_samples
        with report.phase(f"IWAE estimate of log p(x) (K={k}, {len(subset)} examples)", len(subset)) as bar:
            final["validation"] = likelihood_evaluation(model, subset, num_samples=k, seed=config.train.seed,
                                                        progress=bar.update)
    return final


def _write_figures(model, config: RunConfig, val_images, val_labels, out_dir: Path,
                   report: Reporter | None = None) -> None:
    seed = config.train.seed
    figures = [
        lambda: plot_samples(model, out_dir / "samples.png", n=64, seed=seed),
        lambda: plot_reconstructions(model, val_images, out_dir / "reconstructions.png"),
        lambda: plot_latent(model, val_images, val_labels, out_dir / "latent.png",
                            projection=config.train.latent_projection, seed=seed),
        lambda: plot_interpolations(model, val_images, out_dir / "interpolations.png", seed=seed),
        lambda: plot_traversals(model, val_images, out_dir / "traversals.png"),
    ]
    report = report or Reporter(enabled=False)
    with report.phase("figures (samples, reconstructions, latent, interpolations, traversals)", len(figures)) as bar:
        for figure in figures:
            figure()
            bar.update()
