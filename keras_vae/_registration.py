"""Lazy Keras registration: ``keras.models.load_model`` finds keras-vae classes after ``import keras_vae``.

Keras 3 resolves a saved class ``"keras_vae>VAE"`` through its global registry
(``keras.src.saving.object_registration.GLOBAL_CUSTOM_OBJECTS``), filled by
``@register_keras_serializable`` when the class's module is imported; for packages other than
keras/keras_hub/keras_cv/keras_nlp it never imports that module itself. Importing the models at
``import keras_vae`` would import TensorFlow (seconds, and the CLI must stay light), so instead:

- once Keras' registry module exists (now, or when Keras is imported later: a one-shot
  ``sys.meta_path`` finder notices it), its registry dict is replaced by a subclass holding the same
  entries whose ``in`` test imports :data:`MODULES` the first time a ``"keras_vae>..."`` name is
  looked up and not yet present;
- nothing else changes: registration, lookup and ``custom_objects`` behave as before.
"""
from __future__ import annotations

import importlib
import importlib.abc
import sys

REGISTRY_MODULE = "keras.src.saving.object_registration"
PREFIX = "keras_vae>"
# the modules whose import registers every keras-vae serializable class
MODULES = ("keras_vae.models",)


class _LazyRegistry(dict):
    """Keras' GLOBAL_CUSTOM_OBJECTS, importing keras-vae's model modules on the first miss of a keras-vae name."""

    _loading = False

    def _load(self) -> None:
        if _LazyRegistry._loading:
            return
        _LazyRegistry._loading = True
        try:
            for name in MODULES:
                importlib.import_module(name)
        finally:
            _LazyRegistry._loading = False

    def __contains__(self, name) -> bool:  # type: ignore[override]
        if dict.__contains__(self, name):
            return True
        if isinstance(name, str) and name.startswith(PREFIX):
            self._load()
            return dict.__contains__(self, name)
        return False

    def __missing__(self, name):
        if isinstance(name, str) and name.startswith(PREFIX) and not _LazyRegistry._loading:
            self._load()
            if dict.__contains__(self, name):
                return dict.__getitem__(self, name)
        raise KeyError(name)

    def get(self, name, default=None):
        return self[name] if name in self else default


def _install(module) -> None:
    registry = getattr(module, "GLOBAL_CUSTOM_OBJECTS", None)
    if isinstance(registry, dict) and not isinstance(registry, _LazyRegistry):
        module.GLOBAL_CUSTOM_OBJECTS = _LazyRegistry(registry)


class _Loader(importlib.abc.Loader):
    """Delegates to the real loader, then installs the lazy registry into the fresh module."""

    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _install(module)

    def __getattr__(self, name: str):  # get_source, get_filename, ... of the real loader
        return getattr(self._loader, name)


class _Finder(importlib.abc.MetaPathFinder):
    """One-shot finder: wraps the loader of Keras' registry module the first time it is imported."""

    def find_spec(self, fullname, path, target=None):
        if fullname != REGISTRY_MODULE:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    """Make keras-vae classes loadable by plain ``keras.models.load_model`` (idempotent, imports nothing)."""
    module = sys.modules.get(REGISTRY_MODULE)
    if module is not None:
        _install(module)
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
