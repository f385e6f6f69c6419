"""One training run: data -> model.fit -> run folder (model, config, metrics, figures, logs).

``train(config, out_dir)`` is what ``keras-vae train`` calls; Python users may call it too, or
build the pieces themselves (``make_datasets``, ``build_model``, ``model.fit``).
An interrupted run resumes when started again with the same ``out_dir`` (keras_vae.runs.checkpoint);
keras_vae.runs.lifecycle keeps the folder consistent (lock, status, replacement with --force).
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
from keras_vae.runs import lifecycle as lifecycle
from keras_vae.runs.checkpoint import RunCheckpoint, has_checkpoint, recorded_epoch
from keras_vae.config import RunConfig
from keras_vae.data import make_datasets
from keras_vae.training.distributed import Distribution, make_distribution, worker_folder
from keras_vae.errors import ArtifactError, ConfigError
from keras_vae.evaluation.report import end_of_training
from keras_vae.evaluation.metrics import likelihood_evaluation, model_diagnostics, reconstruction_error
from keras_vae.models import build_model
from keras_vae.models.output_bias import initialize_output_bias
from keras_vae.training.precision import resolve_precision
from keras_vae.training.semi_supervised import model_fields, semi_supervised_data
from keras_vae.training.recipe import recipe_callbacks
from keras_vae.evaluation.plots import (plot_interpolations, plot_latent, plot_reconstructions, plot_samples,
                             plot_traversals)
from keras_vae.training.after_fit import finish_training, finish_training_steps
from keras_vae.training.budget import cap_steps
from keras_vae.utils.progress import Reporter, RunClock, start_summary
from keras_vae.training.summaries import visual_summaries, write_final_summaries
from keras_vae.runs.folder import CONFIG_FILE, METRICS_FILE, MODEL_FILE
from keras_vae.utils.files import atomic_path, read_json, write_json

log = logging.getLogger(__name__)
DIAGNOSTIC_EXAMPLES = 500


@dataclass
class RunResult:
    """What a finished run produced: its folder, the trained model and the metrics.json content."""

    out_dir: Path
    model: Any
    metrics: dict[str, Any] = field(default_factory=dict)
    is_chief: bool = True  # False on a multi-worker run's other workers (they write no run folder)


class EpochRecorder(keras.callbacks.Callback):
    """Per epoch: Keras' train/validation logs plus posterior diagnostics on validation images,
    appended to ``metrics["epochs"]`` and written to metrics.json (so partial runs keep their numbers).
    A diverged epoch is recorded without diagnostics (its weights are not finite)."""

    def __init__(self, metrics: dict[str, Any], images: np.ndarray, path: Path,
                 checkpoint: RunCheckpoint | None = None, labels: np.ndarray | None = None) -> None:
        super().__init__()
        self.record, self.images, self.path, self.checkpoint = metrics, images, path, checkpoint
        self.labels = labels  # a class-conditional model's validation labels

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        from keras_vae.training.schedules import split_logs

        diverged = self.checkpoint is not None and self.checkpoint.divergence is not None
        entry = {
            "epoch": epoch + 1,
            **split_logs(logs, self.model),  # train, validation, schedules (beta, learning rates, ...)
            "diagnostics": None if diverged else model_diagnostics(self.model, self.images, labels=self.labels),
        }
        epochs = [e for e in self.record["epochs"] if e["epoch"] < entry["epoch"]]
        self.record["epochs"] = epochs + [entry]
        write_json(self.path, self.record)


class TrainingDiverged(ArtifactError):
    """A non-finite loss stopped training; the last good checkpoint (if any) is the run's model.keras."""


def _run_config(config) -> RunConfig:
    """``train``'s ``config``: a RunConfig, or the name of a preset."""
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, str):
        from keras_vae.config.presets import get_preset

        return get_preset(config)
    raise ConfigError(f"train(config, out_dir): config must be a RunConfig or a preset's name, got "
                      f"{type(config).__name__}: e.g. keras_vae.train('quick', 'runs/quick') or "
                      "keras_vae.train(merge(get_preset('quick'), {'model': {'latent_dim': 2}}), 'runs/z2') with "
                      "keras_vae.config.merge and keras_vae.config.presets.get_preset")


def train(config: RunConfig | str, out_dir: str | Path, *, verbose: int | str = "auto", force: bool = False,
          restart: bool = False, callbacks: Sequence[keras.callbacks.Callback] = (),
          report: Reporter | None = None) -> RunResult:
    """Train the model ``config`` describes and write the run folder ``out_dir``; returns a RunResult.
    ``config`` is a RunConfig (``keras_vae.config.presets.get_preset(name)``, changed with ``keras_vae.config.merge``)
    or a preset's name, as ``keras-vae train --preset NAME --out OUT_DIR``.

    An unfinished run in ``out_dir`` resumes from its checkpoint (same configuration required;
    ``restart=True`` discards it). A finished run is replaced only with ``force=True``, and only
    once the new run has finished (it trains in ``out_dir/.keras-vae-replacement`` meanwhile).
    See keras_vae.runs.lifecycle for the folder's states and lock. ``report`` prints the
    start-of-run summary and each phase after the epochs (default: on stdout unless ``verbose`` is 0).
    ``config.train.strategy`` picks the tf.distribute strategy (keras_vae.training.distributed); under
    ``multiworker`` only the chief writes ``out_dir``, the other workers train into a temporary folder.
    ``KERAS_VAE_MAX_STEPS=N`` in the environment caps the run at N training steps (keras_vae.training.budget).
    """
    out_dir = Path(out_dir)
    config = _run_config(config)
    config = cap_steps(config)  # KERAS_VAE_MAX_STEPS (keras_vae.training.budget): smoke runs and doc tests
    dist = make_distribution(config.train.strategy, config.train.batch_size)
    if not dist.is_chief:
        return _train_worker(config, out_dir, dist, verbose=verbose, force=force, restart=restart,
                             callbacks=callbacks, report=report)
    with lifecycle.claim(out_dir) as created:
        state = lifecycle.inspect(out_dir)
        if state == "replacing":
            lifecycle.finish_interrupted_replacement(out_dir)
            state = "finished"
        if state not in ("finished", "diverged"):
            return _train_into(config, out_dir, created, verbose=verbose, restart=restart, callbacks=callbacks,
                               report=report, dist=dist)
        if not force:
            raise ArtifactError(f"{str(out_dir)!r} already holds a {state} run: choose another --out or pass "
                                "--force to replace it")
        replacement = out_dir / lifecycle.REPLACEMENT_DIR
        if (lifecycle.read_status(replacement) or {}).get("status") in ("finished", "diverged"):
            shutil.rmtree(replacement)  # a replacement that diverged (or never got moved): start it over
        result = _train_into(config, replacement, not replacement.exists(), verbose=verbose, restart=restart,
                             callbacks=callbacks, report=report, dist=dist)
        lifecycle.replace_run(out_dir, replacement)
        result.out_dir = out_dir
        return result


def _train_worker(config: RunConfig, out_dir: Path, dist: Distribution, *, verbose, force: bool, restart: bool,
                  callbacks: Sequence[keras.callbacks.Callback], report: Reporter | None) -> RunResult:
    """A non-chief worker: the chief's training step for step, in a temporary folder (deleted at the
    end), resuming from the checkpoint the chief keeps in ``out_dir`` (shared storage)."""
    replacement = out_dir / lifecycle.REPLACEMENT_DIR
    chief_run = replacement if force and replacement.is_dir() else out_dir
    with worker_folder(dist) as folder:
        result = _train_into(config, folder, True, verbose=verbose, restart=restart, callbacks=callbacks,
                             report=report, dist=dist,
                             restore_from=None if restart else chief_run / lifecycle.BACKUP_DIR)
    return RunResult(out_dir=out_dir, model=result.model, metrics=result.metrics, is_chief=False)


def _train_into(config: RunConfig, out_dir: Path, created: bool, *, verbose, restart: bool,
                callbacks: Sequence[keras.callbacks.Callback], report: Reporter | None,
                dist: Distribution | None = None, restore_from: Path | None = None) -> RunResult:
    """One run in a claimed folder: resume or start, fit, then model, metrics, figures, status.
    ``restore_from``: the checkpoint folder to resume from when it is not this run's own (a worker's)."""
    dist = dist or Distribution("none")
    backup = out_dir / lifecycle.BACKUP_DIR
    source = restore_from or backup  # where the checkpoint to resume from lives
    if restart:
        lifecycle.clear_run(out_dir)
    resuming = has_checkpoint(source)
    if resuming and restore_from is None:
        lifecycle.check_same_config(out_dir, config.to_dict())
    else:
        lifecycle.clear_run(out_dir)  # an unfinished start with nothing to resume: begin afresh
    report = report if report is not None else Reporter(enabled=verbose not in (0, "0"))
    started = time.time()
    keras.utils.set_random_seed(config.train.seed)
    previous_policy = keras.mixed_precision.global_policy()
    policy, reason = resolve_precision(config.train.precision)
    log.info("precision: %s (%s)", policy, reason)
    keras.mixed_precision.set_global_policy(policy)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        conditional = config.model.num_classes > 0  # class-conditional: (images, labels) batches
        semi = semi_supervised_data(config)  # data.labelled > 0: M2's mixed labelled/unlabelled batches
        data = make_datasets(config.data, image_shape=config.model.image_shape,
                             value_range=config.model.value_range, batch_size=config.train.batch_size,
                             seed=config.train.seed, labels=conditional)
        val_images, val_labels = data.validation_arrays()
        cond_labels = _check_class_labels(config, val_labels) if conditional else None
        with dist.scope():  # distributed variables and optimizers (keras_vae.training.distributed)
            model = build_model(config, **model_fields(semi))
            model.compile_for_training(config.train)
        if not resuming:
            initialize_output_bias(model, data.train.map(lambda x, y: x) if conditional else data.train)  # model.output_bias (a no-op unless "data_mean")
            write_json(out_dir / CONFIG_FILE, config.to_dict())
        else:
            model.output_bias_initialized = True  # the checkpoint holds the bias: fit must not set it again
        lifecycle.write_status(out_dir, "training")
        metrics: dict[str, Any] = {"package_version": __version__, "status": "training", "data": data.description,
                                   "num_train": data.num_train, "num_validation": data.num_validation,
                                   "precision": {"requested": config.train.precision, "policy": policy, "reason": reason},
                                   "strategy": {"name": dist.name, "replicas": dist.replicas,
                                                "workers": dist.cluster.num_workers if dist.cluster else 1},
                                   "epochs": _previous_epochs(source.parent) if resuming else []}
        if semi is not None:
            metrics["semi_supervised"] = semi.record(config.train.seed)
        done_epochs = len(metrics["epochs"])
        if resuming:  # fit continues after the checkpoint's epoch, whatever metrics.json managed to record
            done_epochs = min(config.train.epochs, recorded_epoch(source) or done_epochs)
        clock = RunClock(metrics, _previous_seconds(source.parent) if resuming else 0.0, started=started)
        if resuming and done_epochs >= config.train.epochs:  # interrupted after the epochs: BatchNorm, saving, ...
            report.line(f"finishing the interrupted run in {out_dir}: all {config.train.epochs} epochs are done "
                        f"({clock.previous_seconds:.0f} s spent before); running the phases after training")
        elif resuming:
            report.line(f"resuming the interrupted run in {out_dir} from epoch {done_epochs + 1} of "
                        f"{config.train.epochs} ({done_epochs} done, {clock.previous_seconds:.0f} s spent before)")
        for line in start_summary(config, out_dir, data, model, first_epoch=done_epochs):
            report.line(line)
        if dist.strategy is not None:
            report.line(f"strategy: {dist.describe()}")
        checkpoint = RunCheckpoint(backup, source=restore_from)
        train_ds = data.train if semi is None else semi.train
        train_ds = train_ds.repeat() if config.train.steps_per_epoch else train_ds
        model.fit(
            dist.prepare(train_ds),
            validation_data=dist.prepare(data.validation),
            epochs=config.train.epochs,
            steps_per_epoch=config.train.steps_per_epoch,
            shuffle=False,  # the tf.data pipeline shuffles (seeded)
            verbose=verbose,
            callbacks=[
                checkpoint,
                keras.callbacks.TensorBoard(str(out_dir / "logs"), write_graph=False),
                clock,
                EpochRecorder(metrics, val_images[:DIAGNOSTIC_EXAMPLES], out_dir / METRICS_FILE, checkpoint,
                              labels=None if cond_labels is None else cond_labels[:DIAGNOSTIC_EXAMPLES]),
                *recipe_callbacks(config, metrics),
                *([] if conditional else visual_summaries(config, out_dir / "logs", val_images, metrics)),
                *callbacks,
            ],
        )
        if checkpoint.divergence is not None:
            _keep_last_good(model, checkpoint, metrics, out_dir)
        if conditional:  # the samplers model the codes of all classes together: p(x|z, y) samples z ~ N(0, I)
            posterior = _refresh_conditional_batch_norm(model, data.train, config, report)
            report.line(f"latent samplers: skipped ({CONDITIONAL_SKIP}: class samplers are fitted after saving)")
            posterior["sampler"] = {"chosen": "prior", "skipped": CONDITIONAL_SKIP}
        else:
            with report.phase("BatchNorm statistics and latent samplers (training set; the mixture search)",
                              finish_training_steps(config.train.flow_steps), lines=True) as bar:
                # BatchNorm statistics recomputed, latent samplers fitted and stored (keras_vae.sampling.posterior)
                posterior = finish_training(model, data.train, val_images, out_dir, seed=config.train.seed,
                                            progress=bar.update, flow_steps=config.train.flow_steps)
        with report.phase("saving model.keras", 1) as bar:
            with atomic_path(out_dir / MODEL_FILE) as tmp:
                model.save(tmp)
            bar.update()
        if conditional:
            posterior["class_samplers"] = _fit_class_samplers(out_dir, report)
        metrics["final"] = {**_final_evaluation(model, config, val_images, report, labels=cond_labels), **posterior,
                            "diagnostics": model_diagnostics(model, val_images[:DIAGNOSTIC_EXAMPLES],
                                                             labels=None if cond_labels is None
                                                             else cond_labels[:DIAGNOSTIC_EXAMPLES])}
        if semi is not None:  # q(y|x) on every validation image
            metrics["final"]["classification_error"] = model.classification_error(val_images, cond_labels)
        if conditional:
            report.line(f"sample quality metrics: skipped ({CONDITIONAL_SKIP}; see benchmarks/conditional_vae.py "
                        "for the class agreement of its samples)")
            metrics["evaluation"] = {"skipped": CONDITIONAL_SKIP}
        else:
            with report.phase("sample quality and reconstruction metrics (keras_vae.evaluation)", 1) as bar:
                metrics["evaluation"] = end_of_training(model, config, out_dir, step=config.train.epochs)
                bar.update()
        metrics["resumed"] = resuming
        metrics["train_seconds"] = round(clock.elapsed(), 2)  # both parts of a resumed run
        metrics["elapsed_seconds"] = metrics["train_seconds"]
        write_json(out_dir / METRICS_FILE, metrics)  # the numbers so far, before the figures
        if conditional:
            _write_conditional_figures(model, config, out_dir, report)
        else:
            _write_figures(model, config, val_images, val_labels, out_dir, report)
        write_final_summaries(out_dir / "logs", metrics, config.train.epochs)
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


def _previous_seconds(out_dir: Path) -> float:
    """Seconds the interrupted run being resumed had already spent (0 when unknown)."""
    try:
        return float(read_json(out_dir / METRICS_FILE).get("elapsed_seconds", 0.0))
    except (ArtifactError, TypeError, ValueError):
        return 0.0


def _final_evaluation(model, config: RunConfig, val_images: np.ndarray,
                      report: Reporter | None = None, labels: np.ndarray | None = None) -> dict[str, Any]:
    """Reconstruction MAE and the IWAE estimate (of log p(x|y) with a conditional model's ``labels``)."""
    report = report or Reporter(enabled=False)
    with report.phase(f"reconstruction error ({len(val_images)} validation images)", 1) as bar:
        final: dict[str, Any] = {"reconstruction_mae": reconstruction_error(model, val_images, labels=labels)}
        bar.update()
    if hasattr(model, "log_likelihood"):
        subset = val_images[: config.train.iwae_examples]
        k = config.train.iwae_samples
        with report.phase(f"IWAE estimate of log p(x) (K={k}, {len(subset)} examples)", len(subset)) as bar:
            final["validation"] = likelihood_evaluation(
                model, subset, num_samples=k, seed=config.train.seed, progress=bar.update,
                labels=None if labels is None else labels[: config.train.iwae_examples])
    return final


CONDITIONAL_SKIP = "the model is class-conditional"


def _check_class_labels(config: RunConfig, labels: np.ndarray | None) -> np.ndarray:
    """The validation labels of a class-conditional run, checked against ``model.num_classes``."""
    from keras_vae.errors import DataError

    k = config.model.num_classes
    if labels is None:  # make_datasets refuses unlabelled sources first; a hand-built Datasets may lack them
        raise DataError(f"a class-conditional run needs labels and {config.data.source!r} gave none: use a "
                        "labelled source, or train without --conditional")
    if len(labels) and (labels.min() < 0 or labels.max() >= k):
        raise DataError(f"{config.data.source!r} has labels in [{labels.min()}, {labels.max()}] and the model "
                        f"has {k} classes: set model.num_classes to {int(labels.max()) + 1} "
                        f"(--set model.num_classes={int(labels.max()) + 1})")
    return labels


def _refresh_conditional_batch_norm(model, train_dataset, config: RunConfig, report: Reporter) -> dict[str, Any]:
    """A conditional run's BatchNorm statistics recomputed from (images, labels) batches of the training set, as
    ``finish_training`` recomputes an unconditional run's (the first RECOMPUTE_EXAMPLES images); {} for a model
    without BatchNorm in batch mode, else {"batch_norm": {"recomputed_from_batches", "mode"}}."""
    from keras_vae.training.after_fit import RECOMPUTE_EXAMPLES, _limited

    mode = getattr(model.model_config, "bn_mode", "none")
    if config.model.kind != "vaegan" or mode != "batch":
        return {}
    with report.phase("BatchNorm statistics (training set)", 1) as bar:
        batches = model.recompute_batch_norm(_limited(train_dataset, RECOMPUTE_EXAMPLES, with_labels=True),
                                             seed=config.train.seed)
        bar.update()
    return {"batch_norm": {"recomputed_from_batches": int(batches), "mode": mode}}


def _fit_class_samplers(out_dir: Path, report: Reporter) -> dict[str, Any]:
    """A conditional run's class samplers (samplers/classes.json), fitted on its codes q(z|x, y) of each class.
    Its codes still carry the class (the VAEGAN's population KL charges no code for it; the classic CVAE's
    posteriors leave holes in N(0, I)), so z ~ N(0, I) with label k need not decode a k: like an unconditional
    run it samples from samplers fitted to its codes (class agreement: docs/conditional.md)."""
    from keras_vae.training.class_samplers import fit_class_samplers

    with report.phase("class samplers (one latent sampler per class, samplers/classes.json)", 1) as bar:
        samplers = fit_class_samplers(out_dir)
        bar.update()
    return {str(c): {"kind": s.kind, "components": s.num_components} for c, s in samplers.items()}


def _write_conditional_figures(model, config: RunConfig, out_dir: Path, report: Reporter | None = None) -> None:
    """samples.png, one row per class (z from class k's sampler when the run has class samplers); the other
    figures need the fitted samplers or label-free codes."""
    from keras_vae.evaluation.plots import plot_class_samples
    from keras_vae.sampling.classes import has_class_samplers, load_class_samplers

    report = report or Reporter(enabled=False)
    samplers = load_class_samplers(out_dir, model.latent_dim) if has_class_samplers(out_dir) else None
    with report.phase("figures (samples, one row per class)", 1) as bar:
        plot_class_samples(model, out_dir / "samples.png", seed=config.train.seed, class_samplers=samplers)
        bar.update()
    report.line(f"figures: only samples.png ({CONDITIONAL_SKIP}: reconstructions, latent, interpolations and "
                "traversals are not drawn)")


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
