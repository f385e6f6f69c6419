"""A lock file with the owner's pid: one writer per folder, stale locks of dead processes taken over.

    with folder_lock(out_dir, what="export"):
        ...  # only one process at a time gets here for out_dir

The lock is ``out_dir/.keras-vae.lock`` created with O_CREAT | O_EXCL (atomic on local file
systems) and holding ``pid host``. A second process finds it and fails at once with one line
naming the pid; a lock whose pid no longer runs on this host (kill -9, power loss) is removed and
taken. Pure Python, no TensorFlow.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from keras_vae.errors import ArtifactError
from keras_vae.run_lifecycle import pid_alive

LOCK_FILE = ".keras-vae.lock"
EMPTY_LOCK_GRACE_S = 10.0  # an unreadable lock younger than this may be being written


def read_lock(path: Path) -> tuple[int, str] | None:
    """(pid, host) recorded in a lock file; None when it is unreadable or malformed."""
    try:
        pid, host = path.read_text().split()[:2]
        return int(pid), host
    except (OSError, ValueError):
        return None


def _is_stale(path: Path) -> bool:
    owner = read_lock(path)
    if owner is None:  # being filled right now, or its writer died between creating and filling it
        try:
            return time.time() - path.stat().st_mtime > EMPTY_LOCK_GRACE_S
        except FileNotFoundError:
            return True
    pid, host = owner
    return host == socket.gethostname() and not pid_alive(pid)


@contextlib.contextmanager
def folder_lock(folder: str | Path, what: str = "export") -> Iterator[Path]:
    """Hold ``folder/.keras-vae.lock`` for the duration of the block (ArtifactError if another live
    process holds it); the folder must exist."""
    path = Path(folder) / LOCK_FILE
    for _ in range(3):  # a stale lock is removed and creation retried; another racer may win
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _is_stale(path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            pid, host = read_lock(path) or (0, "?")
            raise ArtifactError(
                f"another {what} (pid {pid} on {host}) is writing to {str(Path(folder))!r}: wait for it to "
                f"finish, or delete {str(path)!r} if that process no longer runs") from None
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {socket.gethostname()}\n")
        break
    else:
        raise ArtifactError(f"cannot take the lock {str(path)!r}: another process keeps replacing it")
    try:
        yield path
    finally:
        owner = read_lock(path)
        if owner is not None and owner[0] == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
