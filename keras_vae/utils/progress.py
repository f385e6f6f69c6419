"""What a run tells its user while it works: the start-of-run summary, each phase after the epochs
with a progress bar (Keras' ``Progbar``), the resume message and the run's total time.

``Reporter`` writes plain lines to a stream (stdout by default). ``Reporter.phase(name, total)``
announces a phase ("IWAE estimate", "figures", ...) and returns a bar to ``update(n)``; on a
terminal the bar redraws in place, elsewhere (logs, pipes) one line is printed when the phase ends,
and for the long phases (``lines=True``: the latent sampler fit, export) also a line per step with
the elapsed time and an ETA. Library code takes such a bar's ``update`` as a plain ``progress(n)``
callable (``keras_vae.sampling.samplers.fit_samplers``, ``keras_vae.export.exporter.export_run``).
``RunClock`` is a callback that keeps ``elapsed_seconds`` of a run in its metrics record, so a
resumed run's total time counts the interrupted part too.
"""
from __future__ import annotations

import contextlib
import sys
import time
from typing import IO, Any, Iterator

import keras


class _NullBar:
    def update(self, n: int = 1) -> None:
        pass


class _Bar:
    """Counts units of work done; draws Keras' Progbar (verbose 1 on a terminal, one final line otherwise)."""

    def __init__(self, total: int, interactive: bool) -> None:
        self.done = 0
        self.total = max(1, int(total))
        self._bar = keras.utils.Progbar(self.total, verbose=1 if interactive else 2, unit_name="step")

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + int(n))
        self._bar.update(self.done, finalize=self.done >= self.total)

    def close(self) -> None:
        if self.done < self.total:
            self.done = self.total
            self._bar.update(self.done, finalize=True)


MAX_STEP_LINES = 10  # a phase with more steps prints a line per 1/MAX_STEP_LINES of its work


class _StepLines:
    """Counts units of work done and prints '  NAME: k/N steps, T s, ETA E s' per step (logs, pipes: a
    terminal gets the Progbar instead); the ETA assumes the remaining steps cost what the done ones did."""

    def __init__(self, name: str, total: int, line) -> None:
        self.name, self.total, self.line = name, max(1, int(total)), line
        self.done, self.started, self._printed = 0, time.time(), -1

    def update(self, n: int = 1) -> None:
        self.done = min(self.total, self.done + int(n))
        bucket = self.done * MAX_STEP_LINES // self.total if self.total > MAX_STEP_LINES else self.done
        if self.done >= self.total or bucket == self._printed:
            return  # the last step is the phase's "done in" line
        self._printed = bucket
        elapsed = time.time() - self.started
        eta = elapsed / self.done * (self.total - self.done) if self.done else float("nan")
        self.line(f"  {self.name}: {self.done}/{self.total} steps, {elapsed:.0f} s, ETA {eta:.0f} s")

    def close(self) -> None:
        pass


class Reporter:
    """User-facing progress lines of a run. ``enabled=False`` prints nothing; ``bars=False`` keeps the
    lines but draws no progress bars (``--quiet``)."""

    def __init__(self, stream: IO[str] | None = None, enabled: bool = True, bars: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.bars = bars

    @property
    def _out(self) -> IO[str]:
        return self.stream if self.stream is not None else sys.stdout

    def line(self, text: str) -> None:
        """Print one line (flushed, so it shows before a long computation starts)."""
        if self.enabled:
            print(text, file=self._out, flush=True)

    @contextlib.contextmanager
    def phase(self, name: str, total: int, lines: bool = False) -> Iterator[Any]:
        """Announce ``name``, yield a bar with ``update(n)`` over ``total`` units, then report the time taken.
        ``lines``: off a terminal, also a line per step with an ETA (for phases that take minutes)."""
        if not self.enabled:
            yield _NullBar()
            return
        self.line(f"{name} ...")
        started = time.time()
        interactive = bool(getattr(self._out, "isatty", lambda: False)()) and self.stream is None
        bar: Any = None  # logs get the two lines only, unless the phase asks for step lines
        if self.bars and interactive:
            bar = _Bar(total, interactive)
        elif self.bars and lines:
            bar = _StepLines(name.split(" (")[0], total, self.line)
        yield bar if bar is not None else _NullBar()
        if bar is not None:
            bar.close()
        self.line(f"{name}: done in {time.time() - started:.1f} s")


def count_parameters(model) -> dict[str, int]:
    """Parameters per sub-network (encoder, decoder, discriminator when present) and in total."""
    counts = {name: int(getattr(model, name).count_params())
              for name in ("encoder", "decoder", "discriminator") if getattr(model, name, None) is not None}
    counts["total"] = sum(counts.values()) if counts else int(model.count_params())
    return counts


def steps_per_epoch(config, dataset) -> int | None:
    """Batches per epoch: the configured steps_per_epoch, else the dataset's cardinality (None if unknown)."""
    if config.train.steps_per_epoch:
        return int(config.train.steps_per_epoch)
    try:
        n = int(dataset.cardinality())
    except (TypeError, ValueError, AttributeError):
        return None
    return n if n > 0 else None


def start_summary(config, out_dir, data, model, first_epoch: int = 0) -> list[str]:
    """The lines printed when a run starts: folder, data, model size, planned steps, what follows the epochs."""
    counts = count_parameters(model)
    parts = ", ".join(f"{k} {v:,}" for k, v in counts.items() if k != "total")
    steps = steps_per_epoch(config, data.train)
    epochs = config.train.epochs
    remaining = max(0, epochs - first_epoch)
    if remaining == 0:
        plan = f"no epochs left (all {epochs} done): only the phases after training"
    elif steps:
        plan = f"{remaining} epoch{'s' if remaining != 1 else ''} x {steps:,} steps = {remaining * steps:,} steps"
    else:
        plan = f"{remaining} epoch{'s' if remaining != 1 else ''}"
    lines = [f"run folder: {out_dir}",
             f"data: {data.description}, batch {config.train.batch_size}",
             f"model: {config.model.kind} ({config.preset or 'custom'}), latent {config.model.latent_dim}, "
             f"image {'x'.join(map(str, config.model.image_shape))}, {counts['total']:,} parameters ({parts})",
             f"plan: {plan}" + (f" (epochs {first_epoch + 1}-{epochs} of {epochs})" if 0 < first_epoch < epochs else "")]
    # the phases of keras_vae.training.loop after the epochs, in its order
    # (the residual networks have BatchNorm, refreshed in bn_mode "batch": LatentVariableModel.recompute_batch_norm)
    refresh = config.model.kind == "vaegan" and config.model.bn_mode == "batch"
    if getattr(config.model, "num_classes", 0) > 0:  # class-conditional: no label-free sampler or sample quality
        after = ["BatchNorm statistics"] if refresh else []
        after += ["save model.keras", "class samplers (one mixture search per class)"]
        after.append("reconstruction error")
        if hasattr(model, "log_likelihood"):
            after.append(f"IWAE estimate (K={config.train.iwae_samples}, {config.train.iwae_examples} examples)")
        after.append("figures (samples, one row per class)")
        lines.append("then: " + ", ".join(after))
        return lines
    flow = " and a RealNVP flow" if getattr(config.train, "flow_steps", 0) > 0 else ""
    sampler_fit = f"latent sampler fit (a mixture search{flow}, the longest phase after training)"
    after = [f"BatchNorm statistics, {sampler_fit}" if refresh else sampler_fit, "save model.keras",
             "reconstruction error"]
    if hasattr(model, "log_likelihood"):
        after.append(f"IWAE estimate (K={config.train.iwae_samples}, {config.train.iwae_examples} examples)")
    after += ["evaluation (sample quality, reconstruction metrics)", "figures"]
    lines.append("then: " + ", ".join(after))
    return lines


class RunClock(keras.callbacks.Callback):
    """Keeps ``record["elapsed_seconds"]`` = seconds spent on this run folder so far, the time of
    earlier (interrupted) sessions included; place it before the callback that writes the record."""

    def __init__(self, record: dict[str, Any], previous_seconds: float = 0.0, started: float | None = None) -> None:
        super().__init__()
        self.record = record
        self.previous_seconds = float(previous_seconds)
        self.started = time.time() if started is None else float(started)
        record["elapsed_seconds"] = round(self.previous_seconds, 2)

    def elapsed(self) -> float:
        return self.previous_seconds + time.time() - self.started

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.record["elapsed_seconds"] = round(self.elapsed(), 2)
