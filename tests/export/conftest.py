"""Fixtures of the exporter tests: small trained run folders (one per model kind/architecture)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def make_test_run(run_dir, preset: str, **model_overrides) -> Path:
    """A run folder (model.keras + config.json) of ``preset``, trained one short epoch on random binary images."""
    from keras_vae.config import merge
    from keras_vae.models import build_model
    from keras_vae.config.presets import get_preset

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = get_preset(preset)
    if model_overrides:
        cfg = merge(cfg, {"model": model_overrides})
    import keras

    keras.utils.set_random_seed(cfg.train.seed)  # the same weights on every run of the suite
    model = build_model(cfg)
    model.compile_for_training(cfg.train)
    rng = np.random.default_rng(0)
    images = (rng.uniform(size=(32, *cfg.model.image_shape)) > 0.5).astype("float32")
    low, high = cfg.model.value_range
    model.fit(images * (high - low) + low, epochs=1, batch_size=16, verbose=0)
    model.save(run_dir / "model.keras")
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))
    return run_dir


@pytest.fixture(scope="session")
def vae_run(tmp_path_factory) -> Path:
    return make_test_run(tmp_path_factory.mktemp("run-mlp"), "tiny-vae")


@pytest.fixture(scope="session")
def conv_run(tmp_path_factory) -> Path:
    """A small conv VAE (two strided convolutions, kernel 3 stride 2 transposed convolutions)."""
    return make_test_run(tmp_path_factory.mktemp("run-conv"), "mnist-conv", conv_filters=(4, 8),
                         hidden_units=(16,), latent_dim=4)


@pytest.fixture(scope="session")
def vaegan_run(tmp_path_factory) -> Path:
    """The paper's model at its smallest ('tiny': 16x16x1, latent 8)."""
    return make_test_run(tmp_path_factory.mktemp("run-vaegan"), "tiny")
