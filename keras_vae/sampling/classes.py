"""Class-conditional latent samplers: one Gaussian mixture per class, fitted on the codes of that class's
training images, stored as ``RUN_DIR/samplers/classes.json``.

For each class c, on the posterior means mu_i and variances sigma_i^2 of the training images labelled c:

    gaussian  N(m_c, C_c), m_c = mean_i mu_i, C_c = Cov_i(mu_i) (1/N_c) + diag(mean_i sigma_i^2)  (``fit_gaussian``)
    gmm       the mixture search of ``fit_gmm`` on a small size grid (CLASS_COMPONENTS: a class has a tenth
              of the codes)

and keeps the candidate that gives the held-out codes of that class (z = mu + sigma eps of its validation
images) the highest mean log-likelihood (``choose_sampler``). A class without validation codes keeps the
Gaussian. Sampling class c is the drawing rule of its LatentSampler: the same seed gives the same latents.

File format (JSON, written atomically)::

    {"format": "keras-vae-class-samplers", "version": 1, "latent_dim": d,
     "classes": {"0": <sampler dict (sampler.json's format)>, "1": ..., ...}}

NumPy-only (scikit-learn for the mixtures, as ``samplers``); fitting from a run folder (encoding its labelled
training set) is ``keras_vae.training.class_samplers.fit_class_samplers``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from keras_vae.errors import ArtifactError, ConfigError, DataError
from keras_vae.sampling.samplers import GMM_SHRINKAGE, LatentSampler, choose_sampler, fit_gaussian, fit_gmm

CLASSES_FORMAT = "keras-vae-class-samplers"
CLASSES_VERSION = 1
CLASSES_FILE = "samplers/classes.json"
CLASS_COMPONENTS = (1, 2, 4, 8)  # mixture sizes tried per class (a few hundred codes each on the digits)


def fit_class_samplers_from_codes(means: np.ndarray, variances: np.ndarray, labels: np.ndarray,
                                  validation_codes: np.ndarray, validation_labels: np.ndarray, *, seed: int = 0,
                                  components: Sequence[int] = CLASS_COMPONENTS,
                                  shrinkage: Sequence[float] = GMM_SHRINKAGE,
                                  progress: Callable[[int], None] | None = None) -> dict[int, LatentSampler]:
    """{class: LatentSampler} for every class in ``labels``: the Gaussian of the class's codes, or the mixture
    (``components`` x ``shrinkage``; ``components=()`` fits the Gaussian only) when it gives the class's held-out
    codes a higher likelihood. ``progress(1)`` after each class."""
    means = np.asarray(means, np.float64)
    variances = np.asarray(variances, np.float64)
    labels = np.asarray(labels).reshape(-1)
    val = np.asarray(validation_codes, np.float64)
    val_labels = np.asarray(validation_labels).reshape(-1)
    if len(labels) != len(means) or len(val_labels) != len(val):
        raise DataError(f"got {len(means)} codes with {len(labels)} labels and {len(val)} held-out codes with "
                        f"{len(val_labels)} labels: pass one label per code")
    classes = sorted(int(c) for c in np.unique(labels) if c >= 0)
    if not classes:
        raise DataError("the training codes carry no class labels: fit class samplers on a labelled source")
    samplers = {}
    for c in classes:
        mu, var = means[labels == c], variances[labels == c]
        if len(mu) < 2:
            raise DataError(f"class {c} has {len(mu)} training image(s): a class sampler needs at least 2")
        held_out = val[val_labels == c]
        candidates = {"gaussian": fit_gaussian(mu, var)}
        if len(held_out) and components:
            candidates["gmm"] = fit_gmm(mu, var, held_out, components=components, shrinkage=shrinkage, seed=seed)
        if len(held_out):
            chosen = choose_sampler(candidates, held_out)
        else:
            chosen = candidates["gaussian"]
        samplers[c] = LatentSampler(chosen.kind, chosen.weights, chosen.means, chosen.scale_tril,
                                    fitted_on={**dict(chosen.fitted_on), "class": c},
                                    selection=dict(chosen.selection))
        if progress is not None:
            progress(1)
    return samplers


def class_samplers_to_dict(samplers: Mapping[int, LatentSampler]) -> dict:
    dims = {s.latent_dim for s in samplers.values()}
    if len(dims) != 1:
        raise ConfigError(f"class samplers must share one latent dimension, got {sorted(dims)}")
    return {"format": CLASSES_FORMAT, "version": CLASSES_VERSION, "latent_dim": dims.pop(),
            "classes": {str(int(c)): s.to_dict() for c, s in sorted(samplers.items())}}


def save_class_samplers(run_dir: str | Path, samplers: Mapping[int, LatentSampler]) -> Path:
    """Write ``RUN_DIR/samplers/classes.json`` atomically; returns its path."""
    from keras_vae.utils.files import atomic_path

    path = Path(run_dir) / CLASSES_FILE
    text = json.dumps(class_samplers_to_dict(samplers), indent=1) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def has_class_samplers(run_dir: str | Path) -> bool:
    return (Path(run_dir) / CLASSES_FILE).is_file()


def load_class_samplers(run_dir: str | Path, latent_dim: int | None = None) -> dict[int, LatentSampler]:
    """{class: LatentSampler} of ``RUN_DIR/samplers/classes.json`` (ArtifactError when missing or corrupt)."""
    path = Path(run_dir) / CLASSES_FILE
    source = f"class sampler file {str(path)!r}"
    if not path.is_file():
        raise ArtifactError(f"run folder {str(run_dir)!r} has no class samplers ({CLASSES_FILE}): fit them with "
                            "keras-vae sample RUN --class K (once), or "
                            "keras_vae.training.class_samplers.fit_class_samplers(RUN)")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{source} is not valid JSON ({exc}): delete it and fit the class samplers again") from None
    if not isinstance(data, dict) or data.get("format") != CLASSES_FORMAT:
        raise ArtifactError(f"{source} is not a keras-vae class sampler file (format {CLASSES_FORMAT!r} expected)")
    if data.get("version") != CLASSES_VERSION:
        raise ArtifactError(f"{source} has version {data.get('version')!r}; this keras-vae reads version "
                            f"{CLASSES_VERSION}: upgrade keras-vae or fit the class samplers again")
    classes = data.get("classes")
    if not isinstance(classes, dict) or not classes:
        raise ArtifactError(f"{source} is corrupt: 'classes' must be a non-empty object")
    samplers = {}
    for key, value in classes.items():
        try:
            c = int(key)
        except ValueError:
            raise ArtifactError(f"{source} is corrupt: class key {key!r} is not an integer") from None
        sampler = LatentSampler.from_dict(value, f"{source} class {key}")
        wanted = data.get("latent_dim") if latent_dim is None else int(latent_dim)
        if sampler.latent_dim != wanted:
            raise ArtifactError(f"{source} has class samplers of latent dimension {sampler.latent_dim} but the model "
                                f"has {wanted}: it belongs to another model; fit the class samplers again")
        samplers[c] = sampler
    return samplers


def load_class_sampler(run_dir: str | Path, label: int, latent_dim: int | None = None) -> LatentSampler:
    """The sampler of class ``label`` from ``RUN_DIR/samplers/classes.json``."""
    samplers = load_class_samplers(run_dir, latent_dim)
    if int(label) not in samplers:
        raise ConfigError(f"--class {label}: the run's class samplers cover classes {sorted(samplers)}: "
                          "pick one of them")
    return samplers[int(label)]
