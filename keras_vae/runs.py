"""Run folders: what ``keras-vae train`` writes and what evaluate/sample/export read back.

    RUN_DIR/model.keras      the trained model (both optimizers' state included)
    RUN_DIR/config.json      the full resolved RunConfig
    RUN_DIR/metrics.json     per-epoch metrics and diagnostics, final evaluation
    RUN_DIR/*.png, logs/     figures and TensorBoard logs

Every file is written atomically (temporary file in the same folder, then ``os.replace``).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

from keras_vae.config import RunConfig
from keras_vae.errors import ArtifactError, KerasVAEError

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600 files: give the final file the usual umask mode
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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


def check_run_dir(run_dir: str | Path) -> Path:
    """The run folder as a Path, after checking that it holds a model and its configuration."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"run folder {str(run_dir)!r} does not exist: pass a folder written by 'keras-vae train'")
    for name in (MODEL_FILE, CONFIG_FILE):
        if not (run_dir / name).is_file():
            raise ArtifactError(
                f"run folder {str(run_dir)!r} has no {name}: pass a folder written by 'keras-vae train' "
                "(was the run interrupted before it finished?)"
            )
    return run_dir


def load_run_config(run_dir: str | Path) -> RunConfig:
    """The RunConfig stored in ``run_dir/config.json``."""
    run_dir = check_run_dir(run_dir)
    try:
        return RunConfig.from_dict(read_json(run_dir / CONFIG_FILE))
    except KerasVAEError as exc:
        raise ArtifactError(f"{str(run_dir / CONFIG_FILE)!r} is not a valid keras-vae configuration: {exc}") from None


def load_model(path: str | Path):
    """Load a ``.keras`` file written by keras-vae, with clear errors for missing or corrupt files."""
    import keras

    import keras_vae.models  # noqa: F401 - registers the serializable classes
    from keras_vae.models.base import LatentVariableModel

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"model file {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise ArtifactError(f"model file {str(path)!r} is corrupt (not a .keras zip archive): re-run training or export")
    try:
        model = keras.models.load_model(path)
    except Exception as exc:  # noqa: BLE001 - any load failure becomes one clear line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"cannot load model file {str(path)!r}: {first}") from None
    if not isinstance(model, LatentVariableModel):
        raise ArtifactError(f"{str(path)!r} holds a {type(model).__name__}, not a keras-vae model")
    return model


def load_run(run_dir: str | Path, sampler: str | None = None):
    """(RunConfig, model) of a finished run folder; the model samples from the run's latent sampler
    (``sampler.json``, or ``sampler`` = 'prior' | 'gaussian' | 'gmm'; see keras_vae.posterior_sampling)."""
    from keras_vae.posterior_sampling import load_sampler

    config = load_run_config(run_dir)
    model = load_model(Path(run_dir) / MODEL_FILE)
    model.latent_sampler = load_sampler(run_dir, model.latent_dim, sampler)
    return config, model


LATEST_LINK = "latest"


def update_latest_link(run_dir: str | Path) -> Path | None:
    """Point ``<parent>/latest`` at ``run_dir`` when its parent folder is named ``runs`` (atomically, a
    relative symlink); returns the link, or None when nothing was linked (other parents, a real
    folder named ``latest``, or a file system without symlinks)."""
    run_dir = Path(run_dir)
    parent = run_dir.parent
    if parent.name != "runs" or run_dir.name == LATEST_LINK:
        return None
    link = parent / LATEST_LINK
    if link.exists() and not link.is_symlink():
        return None
    tmp = parent / f".{LATEST_LINK}.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(run_dir.name, tmp, target_is_directory=True)
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        return None
    return link
