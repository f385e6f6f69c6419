"""Run folders: what ``keras-vae train`` writes and what evaluate/sample/export read back.

    RUN_DIR/model.keras      the trained model (both optimizers' state included)
    RUN_DIR/config.json      the full resolved RunConfig
    RUN_DIR/metrics.json     per-epoch metrics and diagnostics, final evaluation
    RUN_DIR/*.png, logs/     figures and TensorBoard logs

Every file is written atomically (temporary file in the same folder, then ``os.replace``).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path


from keras_vae.config import RunConfig
from keras_vae.errors import ArtifactError, KerasVAEError
from keras_vae.utils.files import read_json

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
EXPORT_FILE = "export.json"  # keras_vae.export.contract.EXPORT_JSON: what marks an export folder
# the figures a finished run holds (keras_vae.training.loop._write_figures), in the order it writes them
FIGURE_FILES = ("samples.png", "reconstructions.png", "latent.png", "interpolations.png", "traversals.png")


def check_run_dir(run_dir: str | Path) -> Path:
    """The run folder as a Path, after checking that it holds a model and its configuration."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"run folder {str(run_dir)!r} does not exist: pass a folder written by 'keras-vae train'")
    if not (run_dir / MODEL_FILE).is_file():  # another kind of folder, named as such
        if (run_dir / EXPORT_FILE).is_file():
            raise ArtifactError(f"{str(run_dir)!r} is an export folder (keras-vae export), not a run folder: pass "
                                "the run folder it was exported from (export.json 'source' names it)")
        if (run_dir / "saved_model.pb").is_file():
            raise ArtifactError(f"{str(run_dir)!r} is a SavedModel (TF Serving), not a run folder: pass the run "
                                "folder it was exported from, or, to keras-vae sample, the export folder that "
                                "holds it")
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
        model = _load_with_batch_norm_keys_renamed(path)
        if model is None:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ArtifactError(f"cannot load model file {str(path)!r}: {first}") from None
    if not isinstance(model, LatentVariableModel):
        raise ArtifactError(f"{str(path)!r} holds a {type(model).__name__}, not a keras-vae model")
    return model


_FUSED_KEY = "fused_batch_normalization"


def _load_with_batch_norm_keys_renamed(path: Path):
    """A model file saved while the fused BatchNorm layer was named FusedBatchNormalization keys the
    PatchGAN's BatchNorm weights ``fused_batch_normalization[_k]``; today's name (and every earlier file) keys
    them ``batch_normalization[_k]``. Loads a renamed copy of such a file; None for any other file."""
    import tempfile

    import h5py
    import keras

    with zipfile.ZipFile(path) as archive:
        if "model.weights.h5" not in archive.namelist():
            return None
        with tempfile.TemporaryDirectory() as tmp:
            archive.extractall(tmp)
            renamed = 0
            with h5py.File(Path(tmp) / "model.weights.h5", "r+") as weights:
                groups = []
                weights.visit(lambda name: groups.append(name) if name.rsplit("/", 1)[-1].startswith(_FUSED_KEY)
                              else None)
                for name in sorted(groups, key=len, reverse=True):
                    parent, _, leaf = name.rpartition("/")
                    weights.move(name, f"{parent}/{leaf[len('fused_'):]}" if parent else leaf[len("fused_"):])
                    renamed += 1
            if not renamed:
                return None
            copy = Path(tmp) / "renamed.keras"
            with zipfile.ZipFile(copy, "w") as out:
                for name in archive.namelist():
                    out.write(Path(tmp) / name, name)
            try:
                return keras.models.load_model(copy)
            except Exception:  # noqa: BLE001 - the caller reports the original failure
                return None


def load_run(run_dir: str | Path, sampler: str | None = None):
    """(RunConfig, model) of a finished run folder; the model samples from the run's latent sampler
    (``sampler.json``, or ``sampler`` = 'prior' | 'gaussian' | 'gmm' | 'flow'; see keras_vae.sampling.posterior)."""
    from keras_vae.sampling.posterior import load_sampler

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
