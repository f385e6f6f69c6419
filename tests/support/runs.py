"""Small run folders: a model of a preset trained one short epoch, without the rest of ``train``.

The session fixtures of tests/conftest.py train each kind once; tests that need their own run (another
preset or architecture, or a run to change) call ``make_test_run`` or copy a session run with
``copy_run``.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np


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


def copy_run(run_dir, dest) -> Path:
    """A private copy of a (read-only, session-wide) run or export folder that a test may change."""
    dest = Path(dest)
    shutil.copytree(run_dir, dest)
    return dest


@dataclass(frozen=True)
class Exported:
    """An export of ``run`` into ``out`` and the report ``export_run`` returned."""
    run: Path
    out: Path
    report: dict


def snapshot(root) -> dict[str, tuple[int, int]]:
    """{relative path: (size, mtime_ns)} of every file and folder under ``root``."""
    root = Path(root)
    return {p.relative_to(root).as_posix(): (0 if p.is_dir() else p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*")}
