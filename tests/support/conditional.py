"""A class-conditional run and its export, for the conditional export and parity tests.

``build_conditional_export(out)`` writes ``out/run`` (tiny-vae with ``num_classes=3``, trained one short epoch
on random binary images and labels; ``samplers/classes.json`` with hand-made mixtures for classes 0 and 1, so
class 2 draws from N(0, I)) and ``out/export`` (its export with the float16 and int8 decoders).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

NUM_CLASSES = 3


def hand_made_class_samplers() -> dict:
    """{0: a 3-component GMM, 1: a shifted full-covariance Gaussian} over latent 4."""
    from keras_vae.sampling.samplers import LatentSampler
    from tests.support.decoders import hand_made_gmm_sampler

    rng = np.random.default_rng(7)
    tril = np.tril(rng.normal(size=(1, 4, 4)) * 0.2, -1) + np.eye(4)[None] * 0.6
    gaussian = LatentSampler("gaussian", np.array([1.0]), np.array([[1.0, -1.5, 0.5, 2.0]]), tril,
                             fitted_on={"examples": 0, "mode": "test", "class": 1}, selection={})
    return {0: hand_made_gmm_sampler(), 1: gaussian}


def make_conditional_run(run_dir) -> Path:
    """tiny-vae with 3 classes, fitted one short epoch on random binary images and labels, with class samplers."""
    import keras

    from keras_vae.config import merge
    from keras_vae.config.presets import get_preset
    from keras_vae.models import build_model
    from keras_vae.sampling.classes import save_class_samplers

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = merge(get_preset("tiny-vae"), {"model": {"num_classes": NUM_CLASSES}})
    keras.utils.set_random_seed(cfg.train.seed)
    model = build_model(cfg)
    model.compile_for_training(cfg.train)
    rng = np.random.default_rng(0)
    images = (rng.uniform(size=(32, *cfg.model.image_shape)) > 0.5).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, 32)
    model.fit(images, labels, epochs=1, batch_size=16, verbose=0)
    model.save(run_dir / "model.keras")
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict()))
    save_class_samplers(run_dir, hand_made_class_samplers())
    return run_dir


def build_conditional_export(out) -> None:
    from keras_vae.export.exporter import export_run

    out = Path(out)
    run = make_conditional_run(out / "run")
    export_run(run, out / "export", float16=True, quantize=True)
