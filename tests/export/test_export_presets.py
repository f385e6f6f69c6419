"""The paper's model exports at its real size: a one-step run of celeba-64 and of paper-celeba-hq-256, trained in
float32 and in mixed_bfloat16, goes through ``export_run`` with every parity check passing.

Before the bounds were derived from round-off (keras_vae/export/roundoff.py) both presets failed on 'encode'
(max abs difference 1.2e-4 to 8e-4 against one fixed 1e-4): the one-step encoders amplify float32 round-off
about a thousandfold. The runs are trained here (build_model, one fit step on two random images, then the
BatchNorm statistics recomputed from them as ``keras-vae train`` does after its epochs) rather than with
``keras-vae train``, whose evaluation after training takes minutes and 20 GB at 256 px; their data source is
a folder of random PNGs (no labels, nothing to download).

Opt-in (``KERAS_VAE_REAL_SIZE_TESTS=1 pytest tests/export/test_export_presets.py``): each export traces,
converts and checks a 10-50 M parameter model; the four took 3.5-7 minutes each on a loaded 2-core Xeon (about
20 minutes together, more than the whole suite's 12-minute budget), and paper-256 needs several GB of memory.
The fast test below and tests/export/test_roundoff.py (the bound against NumPy float32/bfloat16 simulations)
run in every suite.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from keras_vae.export import contract

PRESETS = {"celeba-64": [1, 7, 64], "paper-celeba-hq-256": [1, 7]}  # preset -> parity batch sizes


def one_step_run(run_dir: Path, preset: str, precision: str) -> Path:
    """A run folder (model.keras + config.json) of ``preset`` trained one step of two random images in
    ``precision``; its data source is a folder of four random PNGs."""
    import keras
    from PIL import Image

    from keras_vae.config import merge
    from keras_vae.config.presets import get_preset
    from keras_vae.models import build_model

    images_dir = run_dir.parent / f"{run_dir.name}-images"
    images_dir.mkdir(parents=True)
    rng = np.random.default_rng(0)
    base = get_preset(preset)
    height, width, channels = base.model.image_shape
    for i in range(4):
        pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(images_dir / f"{i}.png")
    config = merge(base, {"train": {"precision": precision, "batch_size": 2, "epochs": 1, "steps_per_epoch": 1},
                          "data": {"source": f"folder:{images_dir}"}})
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        keras.utils.set_random_seed(config.train.seed)
        model = build_model(config)
        model.compile_for_training(config.train)
        low, high = config.model.value_range
        x = rng.uniform(low, high, (2, height, width, channels)).astype("float32")
        model.fit(x, epochs=1, batch_size=2, verbose=0)
        # as `keras-vae train` does after the last epoch (training.after_fit): moving statistics from the data.
        # With them the one-step encoder amplifies round-off ~1000x (without: ~1x, and 1e-4 would pass)
        assert model.recompute_batch_norm([x], seed=config.train.seed) == 1
        run_dir.mkdir(parents=True)
        model.save(run_dir / "model.keras")
    finally:
        keras.config.set_dtype_policy(previous)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    return run_dir


def test_the_presets_are_the_paper_geometries_trained_at_auto_precision():
    """What the slow test below exports: the real sizes, whose default precision resolves to mixed_bfloat16 on
    bfloat16 hardware (AVX512-BF16/AMX CPUs, GPUs of compute capability >= 8.0)."""
    from keras_vae.config.presets import get_preset
    from keras_vae.training.precision import resolve_precision

    geometry = {name: (tuple(get_preset(name).model.image_shape), get_preset(name).model.latent_dim,
                       get_preset(name).model.num_stages, get_preset(name).train.precision) for name in PRESETS}
    assert geometry == {"celeba-64": ((64, 64, 3), 128, 4, "auto"), "paper-celeba-hq-256": ((256, 256, 3), 512, 6, "auto")}
    assert resolve_precision("auto", flags={"avx512_bf16"}, gpus=[])[0] == "mixed_bfloat16"
    assert resolve_precision("auto", flags=set(), gpus=[(8, 0)])[0] == "mixed_bfloat16"


REAL_SIZE = os.environ.get("KERAS_VAE_REAL_SIZE_TESTS") == "1"


@pytest.mark.slow
@pytest.mark.skipif(not REAL_SIZE, reason="real-size exports take ~20 min: set KERAS_VAE_REAL_SIZE_TESTS=1 to run them")
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_one_step_paper_model_exports(preset, precision, tmp_path):
    from keras_vae.export import export_run

    run = one_step_run(tmp_path / "run", preset, precision)
    out = tmp_path / "exp"
    report = export_run(run, out)
    parity = report["parity"]
    assert parity["passed"] and parity["batch_sizes"] == PRESETS[preset]
    assert parity["arithmetic"] == {"keras": "float32", "artifacts": "float32"}  # mixed runs export in float32
    assert report["source"]["training_precision"] == precision
    for name, entry in parity["signatures"].items():
        ratios = entry["max_diff_over_bound"]
        print(f"{preset} {precision} {name}: SavedModel {entry['savedmodel_max_abs_diff']:.3g}"
              + (f", onnxruntime {entry['onnx_max_abs_diff']:.3g}" if "onnx" in entry else "")
              + f"; bound {entry['tolerance']:.3g} (max diff/bound {max(ratios.values()):.3f})")
        assert max(ratios.values()) <= 1
        for batch, bounds in entry["bound"].items():
            assert all(b > 0 for b in bounds.values()), (name, batch)
    sampler = parity["sampler"]
    print(f"{preset} {precision} sample: image {sampler['max_abs_diff']['savedmodel_image']:.3g}, "
          f"bound {sampler['image_bound']:.3g}")
    assert sampler["passed"] and sampler["batch_sizes"] == PRESETS[preset]
    for name in (contract.DECODER_ONNX, contract.ENCODER_ONNX, contract.SAMPLER_ONNX, contract.EXPORT_JSON):
        assert (out / name).is_file(), name
    assert (out / "savedmodel" / "vaegan" / "1" / "saved_model.pb").is_file()
