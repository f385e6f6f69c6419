"""The life of a run folder: claimed (lock), training, finished / diverged, replaced (``--force``).

    RUN_DIR/.keras-vae.lock         pid and host of the training that owns the folder (keras_vae.runs.lock)
    RUN_DIR/.keras-vae-run.json     {"status": "training" | "finished" | "diverged" | "replacing", ...}
    RUN_DIR/.keras-vae-backup/      the resumable checkpoint (keras_vae.runs.checkpoint)
    RUN_DIR/.keras-vae-replacement/ a new run trained for ``--force``; it replaces the old one only
                                    once it is finished, file by file, resumable if interrupted

A run counts as finished only when the status file says so, and that is written after every other
file. A folder with files this package did not write is refused, never emptied. No TensorFlow here.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

from keras_vae import __version__
from keras_vae.errors import ArtifactError, ConfigError
from keras_vae.runs.lock import LOCK_FILE, folder_lock, pid_alive  # noqa: F401 (pid_alive: re-exported)
from keras_vae.runs.folder import CONFIG_FILE, METRICS_FILE, MODEL_FILE
from keras_vae.utils.files import read_json, write_json

STATUS_FILE = ".keras-vae-run.json"
BACKUP_DIR = ".keras-vae-backup"
REPLACEMENT_DIR = ".keras-vae-replacement"
FIGURES = ("samples.png", "reconstructions.png", "latent.png", "interpolations.png", "traversals.png")
# what a finished run holds (evaluation.json: written by `keras-vae evaluate`, stale once the model is replaced)
# sampler.json / samplers/: keras_vae.sampling.posterior; features/: a run's own feature network (keras_vae.evaluation)
RUN_OUTPUTS = (MODEL_FILE, CONFIG_FILE, METRICS_FILE, "evaluation.json", "evaluation.md", "sampler.json", "samplers",
               "features", "logs", *FIGURES)
# fields a resumed run may change: how it is distributed (not what it computes; the checkpoint is the
# same weights file), e.g. an interrupted multi-worker run finished on one machine
RESUMABLE_CHANGES = ("train.strategy:",)


@contextlib.contextmanager
def claim(out_dir: Path) -> Iterator[bool]:
    """Create ``out_dir`` if needed and hold its lock file (``keras_vae.runs.lock``) for the block.

    Yields True when this call created the folder. A lock whose pid no longer runs is stale and
    taken over; a live one raises ArtifactError naming the pid.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ArtifactError(f"--out {str(out_dir)!r} is a file, not a folder: choose a folder for the run")
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(
            f"cannot create the run folder {str(out_dir)!r} ({exc.strerror}): choose another --out") from None
    busy = ("{folder!r} is in use by another training (pid {pid} on {host}, lock file {lock!r}): "
            "wait for it to finish or choose another --out")
    with folder_lock(out_dir, busy):
        yield created


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """The status record of ``run_dir`` (None when it has none; a corrupt one reads as 'training')."""
    path = run_dir / STATUS_FILE
    if not path.is_file():
        return None
    try:
        status = json.loads(path.read_text())
        return status if isinstance(status, dict) and "status" in status else {"status": "training"}
    except (OSError, ValueError):
        return {"status": "training"}


def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    """Atomically record ``status`` (and ``extra``) for ``run_dir``."""
    write_json(run_dir / STATUS_FILE, {"status": status, "package_version": __version__,
                                       "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra})


def inspect(run_dir: Path) -> str:
    """'new' (empty), 'training', 'finished', 'diverged' or 'replacing'; foreign content raises.

    A folder without a status record counts as a run of an older keras-vae when it holds
    model.keras and config.json and nothing unknown; anything else there is not ours to touch.
    """
    entries = set(os.listdir(run_dir)) - {LOCK_FILE}
    if not entries:
        return "new"
    status = read_status(run_dir)
    if status is not None:
        return str(status["status"])
    known = set(RUN_OUTPUTS)
    if {MODEL_FILE, CONFIG_FILE} <= entries and entries <= known:
        return "finished"
    foreign = sorted(entries - known) or sorted(entries)
    shown = ", ".join(repr(name) for name in foreign[:3]) + (" ..." if len(foreign) > 3 else "")
    raise ArtifactError(
        f"{str(run_dir)!r} holds files that 'keras-vae train' did not write ({shown}): "
        "choose a new or empty --out folder (nothing there was changed)")


def config_differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """'field: old -> new' for every leaf where two config dicts differ (dotted paths)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in list(old) + [k for k in new if k not in old]:
            out += config_differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if isinstance(old, (list, tuple)) and isinstance(new, (list, tuple)):
        old, new = list(old), list(new)
    return [] if old == new else [f"{prefix[:-1]}: {old!r} -> {new!r}"]


def _with_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A config.json as the current schema reads it: fields added since it was written get their defaults
    (so an older interrupted run resumes), a config the schema rejects stays as written."""
    from keras_vae.config import RunConfig

    try:
        return RunConfig.from_dict(stored).to_dict()
    except (ConfigError, TypeError, ValueError):
        return stored


def check_same_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Raise ConfigError listing the fields that differ from the interrupted run's config.json."""
    path = run_dir / CONFIG_FILE
    if not path.is_file():
        return
    diffs = [d for d in config_differences(_with_defaults(read_json(path)), config)
             if not d.startswith(RESUMABLE_CHANGES)]
    if diffs:
        shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
        raise ConfigError(
            f"{str(run_dir)!r} holds an interrupted run with another configuration ({shown}): rerun with its "
            "settings to resume it, or pass --restart to discard it and start over")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def clear_run(run_dir: Path) -> None:
    """Remove what an unfinished run wrote (outputs, status, checkpoint); the lock stays."""
    for name in (*RUN_OUTPUTS, STATUS_FILE, BACKUP_DIR):
        _remove(run_dir / name)


def discard_failed_start(run_dir: Path, created: bool) -> None:
    """After a failure with nothing resumable: remove the folder if this run created it, else our files."""
    if created:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        clear_run(run_dir)


def replace_run(out_dir: Path, replacement: Path) -> None:
    """Move the finished run in ``replacement`` over the one in ``out_dir``, then mark it finished.

    Status 'replacing' (with the new run's file names) is written first, so an interruption is
    finished by the next ``train`` call: every step is idempotent (a moved file is not in
    ``replacement`` any more, a removed one is gone).
    """
    current = read_status(out_dir) or {}
    if current.get("status") == "replacing" and "outputs" in current:
        outputs, new_status = current["outputs"], current.get("new_status", {})
    else:
        outputs = [name for name in RUN_OUTPUTS if (replacement / name).exists()]
        new_status = read_status(replacement) or {"status": "finished"}
        write_status(out_dir, "replacing", outputs=outputs, new_status=new_status)
    for name in RUN_OUTPUTS:
        if name not in outputs:
            _remove(out_dir / name)  # an old output the new run does not have (e.g. evaluation.json)
        elif (replacement / name).exists():
            _remove(out_dir / name)
            os.replace(replacement / name, out_dir / name)
    write_status(out_dir, new_status.get("status", "finished"),
                 **{k: v for k, v in new_status.items() if k not in ("status", "package_version", "time")})
    shutil.rmtree(replacement, ignore_errors=True)


def finish_interrupted_replacement(out_dir: Path) -> None:
    """Complete a replace_run() that was interrupted (status 'replacing')."""
    replace_run(out_dir, out_dir / REPLACEMENT_DIR)
