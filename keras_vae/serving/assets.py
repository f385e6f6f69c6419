"""Where the serving tools' non-Python files live: the browser explorer (``web``), the Node decoder
(``node``) and the TF Serving kit files (``tfserving``).

In the repository they are the top-level ``serving/`` folder; a wheel ships the same files as
package data in ``keras_vae/serving/_assets/`` (pyproject's ``package-dir`` maps one onto the other),
so one lookup serves an installed wheel and an editable checkout alike. Pure Python.
"""
from __future__ import annotations

from pathlib import Path

from keras_vae.errors import ArtifactError

ASSET_FOLDERS = ("node", "web", "tfserving")
_HERE = Path(__file__).resolve().parent
_CANDIDATES = (_HERE / "_assets", _HERE.parents[1] / "serving")  # installed wheel, then checkout


def assets_root() -> Path:
    """The folder holding ``node/``, ``web/`` and ``tfserving/``; ArtifactError when neither place has it."""
    for root in _CANDIDATES:
        if (root / "web" / "index.html").is_file() and (root / "node" / "noise.js").is_file():
            return root
    raise ArtifactError("the serving assets (browser explorer, Node decoder) are missing from this "
                        f"installation: looked in {', '.join(str(c) for c in _CANDIDATES)}; reinstall keras-vae")


def asset_dir(name: str) -> Path:
    """One asset folder by name (``node``, ``web`` or ``tfserving``)."""
    if name not in ASSET_FOLDERS:
        raise ValueError(f"unknown asset folder {name!r}: choose one of {', '.join(ASSET_FOLDERS)}")
    return assets_root() / name
