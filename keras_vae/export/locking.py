"""The export's folder lock: ``keras_vae.runs.lock`` (the same lock file as training's), named for exports.

    with folder_lock(out_dir, what="export"):
        ...  # only one process at a time gets here for out_dir
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from keras_vae.runs import lock as _lock
from keras_vae.runs.lock import EMPTY_LOCK_GRACE_S, LOCK_FILE, read_lock

__all__ = ["EMPTY_LOCK_GRACE_S", "LOCK_FILE", "folder_lock", "read_lock"]


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str = "export") -> Iterator[Path]:
    """Hold ``folder/.keras-vae.lock`` for the block (ArtifactError naming the owner's pid if another
    live process holds it); the folder must exist."""
    busy = (f"another {what} (pid {{pid}} on {{host}}) is writing to {{folder!r}}: wait for it to finish, "
            "or delete {lock!r} if that process no longer runs")
    with _lock.folder_lock(folder, busy) as path:
        yield path
