"""Where the serving tools' non-Python files live: the browser explorer (``web``), the Node decoder
(``node``) and the TF Serving kit files (``tfserving``); and where their npm packages go.

In the repository they are the top-level ``serving/`` folder; a wheel ships the same files as
package data in ``keras_vae/serving/_assets/`` (pyproject's ``package-dir`` maps one onto the other),
so one lookup serves an installed wheel and an editable checkout alike. Pure Python.

The npm packages (onnxruntime-node and pngjs for the Node decoder, onnxruntime-web for the page) cannot
be installed inside site-packages: ``keras-vae js install`` copies the Node decoder and the web
package files into the *js home* (:func:`js_home`, user-writable) and runs ``npm ci`` there.
"""
from __future__ import annotations

import os
from pathlib import Path

from keras_vae.errors import ArtifactError

ASSET_FOLDERS = ("node", "web", "tfserving")
JS_DIR_ENV = "KERAS_VAE_JS_DIR"
ORT_WEB_DIST = Path("node_modules") / "onnxruntime-web" / "dist"  # under a web folder; also the page's URL path
_HERE = Path(__file__).resolve().parent
_CHECKOUT = _HERE.parents[1]  # the repository root in a checkout (site-packages in an installed wheel)
_CANDIDATES = (_HERE / "_assets", _CHECKOUT / "serving")  # installed wheel, then checkout


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


def package_version() -> str:
    """The installed keras-vae version (from its metadata; the serving layer does not import the package root)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("keras-vae")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "dev"


def js_home() -> Path:
    """Where ``keras-vae js install`` puts the Node decoder and the npm packages: ``$KERAS_VAE_JS_DIR`` when
    set, else ``$XDG_CACHE_HOME/keras-vae/js/<version>`` (``~/.cache`` without XDG_CACHE_HOME). Holds
    ``node/`` (decode.js ... and its node_modules) and ``web/`` (onnxruntime-web in node_modules)."""
    explicit = os.environ.get(JS_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser().absolute()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser().absolute() / "keras-vae" / "js" / package_version()


def _checkout_web() -> Path | None:
    """``serving/web`` of a source checkout (npm ci there by serving/install_test_deps.sh), else None."""
    web = _CHECKOUT / "serving" / "web"
    return web if (_CHECKOUT / "pyproject.toml").is_file() and (web / "index.html").is_file() else None


def ort_web_candidates() -> list[Path]:
    """The onnxruntime-web ``dist`` folders serve-demo tries, in order: the js home's, then a checkout's."""
    places = [js_home() / "web" / ORT_WEB_DIST]
    checkout = _checkout_web()
    if checkout is not None:
        places.append(checkout / ORT_WEB_DIST)
    return places


def find_ort_web_dist(entry: str) -> Path:
    """The first onnxruntime-web ``dist`` folder that holds ``entry``; ArtifactError naming the fix when none does."""
    places = ort_web_candidates()
    for dist in places:
        if (dist / entry).is_file():
            return dist
    raise ArtifactError(f"onnxruntime-web is not installed (no {entry} in {' or '.join(str(p) for p in places)}): "
                        "run `keras-vae js install` (needs Node.js and npm)")
