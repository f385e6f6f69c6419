"""Files written atomically (a temporary file beside the target, then one ``os.replace``) and strict
JSON read back with a clear error. Pure Python.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from keras_vae.errors import ArtifactError


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.

    The file gets ``mode``, or by default the mode a plain ``open()`` would give it (0o666 less the
    umask), not mkstemp's 0600. On an error the temporary file is removed and ``path`` is untouched.
    An OSError that names no file (a write that hits a full disk: ENOSPC, EDQUOT) is raised again with
    ``path`` as its filename, so the error says which file could not be written.
    """
    path = Path(path)
    with _naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _naming(path):
            yield tmp_path
        with _naming(path):
            if tmp_path.exists():
                if mode is None:
                    umask = os.umask(0)
                    os.umask(umask)
                    mode = 0o666 & ~umask
                os.chmod(tmp_path, mode)
            os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """Re-raise a plain OSError without a filename (``write()`` on a full disk, h5py's own errors) with
    ``path`` as its filename; errors of this package (ArtifactError is an OSError) pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None or type(exc).__module__ != "builtins":
            raise
        raise OSError(exc.errno, exc.strerror or str(exc) or type(exc).__name__, str(path)) from exc


def resolve_folder(path: str | Path) -> Path:
    """``path`` with every symbolic link in it resolved, once, before a command reads anything: a command
    given ``runs/latest`` keeps reading and writing the run the link named when it started, even if
    another run moves the link meanwhile. A relative path stays relative (to the current folder); a
    path that does not exist comes back normalised, for the command's own "does not exist" error."""
    text = os.fspath(path)
    real = os.path.realpath(text)
    if os.path.isabs(text):
        return Path(real)
    try:
        return Path(os.path.relpath(real))
    except ValueError:  # another drive (Windows): keep it absolute
        return Path(real)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def finite_json(data: Any) -> Any:
    """``data`` with every non-finite float (NaN, inf) replaced by None: strict JSON that any parser reads."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite_json(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite_json(v) for v in data]
    return data


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented strict JSON (NaN/inf become null), atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(finite_json(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file, with a clear error when it is missing or corrupt."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{str(path)!r} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{str(path)!r} is not valid JSON ({exc}); the run folder may be corrupt") from None
