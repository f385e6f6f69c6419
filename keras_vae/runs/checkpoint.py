"""The resumable checkpoint of a run: atomic, verified, never overwritten by a diverged step.

    BACKUP/epoch-00003.weights.h5   model and optimizer state after epoch 3 (written, then renamed)
    BACKUP/checkpoint.json          {"epoch": 3, "weights": "epoch-00003.weights.h5", "sha256": ...}

checkpoint.json is replaced last, so at every instant it names a complete weights file; the
SHA-256 catches a file damaged afterwards. Replaces ``keras.callbacks.BackupAndRestore``, which
overwrites its file in place (a kill leaves it truncated), saves NaN weights after a divergence
and deletes its folder at the end of ``fit``.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_vae.errors import ArtifactError
from keras_vae.utils.files import atomic_path, file_sha256, write_json

STATE_FILE = "checkpoint.json"


def has_checkpoint(directory: str | Path) -> bool:
    """True when ``directory`` holds a checkpoint record (valid or not)."""
    return (Path(directory) / STATE_FILE).is_file()


def recorded_epoch(directory: str | Path) -> int | None:
    """The epoch the checkpoint record in ``directory`` names (where ``fit`` continues), or None when there is
    no readable record. Not verified: ``RunCheckpoint.restore`` checks the weights file itself."""
    try:
        epoch = json.loads((Path(directory) / STATE_FILE).read_text())["epoch"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) and epoch >= 0 else None


def _first_non_finite(logs: dict[str, Any]) -> tuple[str, float] | None:
    """(name, value) of the first non-finite log, naming a loss term before the total 'loss'."""
    bad = [(k, float(v)) for k, v in logs.items() if not math.isfinite(float(v))]
    named = [item for item in bad if item[0].removeprefix("val_") not in ("loss", "elbo")]  # totals last
    return (named or bad or [None])[0]


class RunCheckpoint(keras.callbacks.Callback):
    """Restore at train begin, save after every finite epoch, stop at the first non-finite loss.

    ``divergence`` is None, or {"epoch", "step", "term", "value"} of the first non-finite value
    (step: batch within the epoch, 1-based; "validation" or "weights" when found at epoch end).
    """

    def __init__(self, directory: str | Path, source: str | Path | None = None) -> None:
        super().__init__()
        self.directory = Path(directory)
        # where restore() reads: ``directory``, or another run's checkpoint (a multi-worker run's
        # non-chief workers resume from the chief's; they write only to their own ``directory``)
        self.source = Path(source) if source is not None else self.directory
        self.divergence: dict[str, Any] | None = None
        self.last_good_epoch: int | None = None
        self._epoch = 0

    # --- reading ------------------------------------------------------------------------
    def _corrupt(self, why: str) -> ArtifactError:
        return ArtifactError(
            f"the training checkpoint in {str(self.source)!r} is corrupt ({why}): "
            "pass --restart to discard it and train from the start")

    def state(self) -> dict[str, Any] | None:
        """The checkpoint record, verified: its weights file exists and matches its SHA-256."""
        path = self.source / STATE_FILE
        if not path.is_file():
            return None
        try:
            state = json.loads(path.read_text())
            weights = self.source / state["weights"]
            epoch, digest = int(state["epoch"]), state["sha256"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise self._corrupt(f"unreadable {STATE_FILE}: {type(exc).__name__}") from None
        if not weights.is_file():
            raise self._corrupt(f"{weights.name} is missing")
        if file_sha256(weights) != digest:
            raise self._corrupt(f"{weights.name} does not match its SHA-256 (truncated or modified)")
        return {"epoch": epoch, "weights": weights}

    def restore(self) -> int | None:
        """Load the checkpoint's weights (model and optimizers) into the model; its epoch, or None."""
        state = self.state()
        if state is None:
            return None
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None and not optimizer.built:  # else its slots are not loaded (as BackupAndRestore)
            optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(state["weights"])
        except Exception as exc:  # noqa: BLE001 - h5py and Keras raise many types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise self._corrupt(f"cannot load {state['weights'].name}: {first}") from None
        return state["epoch"]

    # --- Keras hooks ----------------------------------------------------------------------
    def on_train_begin(self, logs=None) -> None:
        epoch = self.restore()
        if epoch is not None:
            self.model._initial_epoch = epoch  # what BackupAndRestore sets: fit continues from here
            self.last_good_epoch = epoch

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        if self.divergence is None and logs:
            bad = _first_non_finite(logs)
            if bad is not None:
                self._diverged(step=batch + 1, term=bad[0], value=bad[1])

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if self.divergence is None:
            bad = _first_non_finite(logs or {})
            if bad is not None:
                self._diverged(step="validation", term=bad[0], value=bad[1])
            elif not all(np.isfinite(np.asarray(v)).all() for v in self.model.weights):
                self._diverged(step="end", term="weights", value=float("nan"))
        if self.divergence is None:
            self.save(epoch + 1)

    def _diverged(self, step, term: str, value: float) -> None:
        self.divergence = {"epoch": self._epoch + 1, "step": step, "term": term, "value": value}
        self.model.stop_training = True

    # --- writing ------------------------------------------------------------------------
    def save(self, epoch: int) -> None:
        """Write the state after ``epoch`` epochs: weights file (atomic), then the record (atomic)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{epoch:05d}.weights.h5"
        with atomic_path(self.directory / name, suffix=".weights.h5") as tmp:
            self.model.save_weights(tmp)
        write_json(self.directory / STATE_FILE,
                   {"epoch": epoch, "weights": name, "sha256": file_sha256(self.directory / name)})
        self.last_good_epoch = epoch
        for old in self.directory.glob("epoch-*.weights.h5"):
            if old.name != name:
                old.unlink(missing_ok=True)
