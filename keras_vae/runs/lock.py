"""One writer per folder: a lock file holding the owner's pid and host, stale locks taken over.

    with folder_lock(out_dir, busy="another export (pid {pid} on {host}) is writing to {folder!r}: ..."):
        ...  # only one process at a time gets here for out_dir

The lock is ``FOLDER/.keras-vae.lock``, created with O_CREAT | O_EXCL (atomic on local file systems)
and holding ``pid host``. A second process finds it and fails at once with the ``busy`` line; a lock
whose pid no longer runs on this host (kill -9, power loss) is removed and taken, and so is an
unreadable one older than ``EMPTY_LOCK_GRACE_S`` (its writer died between creating and filling it).
Training (``keras_vae.runs.lifecycle.claim``) and export (``keras_vae.export.exporter``) both use it.
"""
from __future__ import annotations

import contextlib
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from keras_vae.errors import ArtifactError

LOCK_FILE = ".keras-vae.lock"
EMPTY_LOCK_GRACE_S = 10.0  # an unreadable lock younger than this may be being written


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (signal 0 probes without sending anything)."""
    if pid <= 0:  # 0 and negatives address process groups, not one process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_lock(path: Path) -> tuple[int, str] | None:
    """(pid, host) recorded in a lock file; None when it is unreadable or malformed. A lock of an
    older version holds the pid alone: it reads as this host's."""
    try:
        fields = path.read_text().split()
        return int(fields[0]), (fields[1] if len(fields) > 1 else socket.gethostname())
    except (OSError, ValueError, IndexError):
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
def folder_lock(folder: str | Path, busy: str = "another process (pid {pid} on {host}) is writing to "
                "{folder!r}: wait for it to finish, or delete {lock!r} if that process no longer runs"
                ) -> Iterator[Path]:
    """Hold ``folder/.keras-vae.lock`` for the block; the folder must exist. A live owner raises
    ArtifactError(``busy`` formatted with pid, host, folder and lock)."""
    path = Path(folder) / LOCK_FILE
    for _ in range(3):  # a stale lock is removed and creation retried; another racer may win
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _is_stale(path):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                continue
            owner = read_lock(path)
            for _ in range(20):  # just created by the other process, which writes its pid next
                if owner is not None:
                    break
                time.sleep(0.05)
                owner = read_lock(path)
            pid, host = owner or ("unknown", "?")
            raise ArtifactError(busy.format(pid=pid, host=host, folder=str(Path(folder)), lock=str(path))) from None
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
