"""examples/ works as shipped: the config file resolves, z.json fits the default run, the Keras script trains."""
from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_my_run_yaml_resolves_to_a_valid_configuration():
    from keras_vae.commands.options import resolve_config
    from keras_vae.config.presets import get_preset

    args = argparse.Namespace(config=str(EXAMPLES / "my_run.yaml"), preset=None, model=None, set=[])
    config = resolve_config(args)
    assert config.preset == "mnist-conv" and config.model.architecture == "conv"
    assert config.model.latent_dim == 8 and config.loss.kl_warmup_steps == 500
    assert config.train.latent_projection == "tsne" and config.train.summary_every == 2
    assert config.model.conv_filters == get_preset("mnist-conv").model.conv_filters


def test_z_json_holds_codes_for_the_default_run():
    from keras_vae.config.presets import DEFAULT_PRESET, get_preset

    codes = np.asarray(json.loads((EXAMPLES / "z.json").read_text()), dtype=np.float64)
    assert codes.ndim == 2 and codes.shape[1] == get_preset(DEFAULT_PRESET["vae"]).model.latent_dim
    assert np.all(np.isfinite(codes)) and np.all(codes[0] == 0.0)


@pytest.mark.slow
def test_keras_fit_script_trains_saves_and_reloads(tmp_path):
    import keras

    import keras_vae

    spec = importlib.util.spec_from_file_location("keras_fit_example", EXAMPLES / "keras_fit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.main(["--epochs", "2", "--examples", "600", "--out", str(tmp_path)])
    assert summary["epochs"] == 2 and np.isfinite(summary["val_elbo"]) and np.isfinite(summary["iwae_log_px"])
    for name in ("model.keras", "best.keras"):
        model = keras.models.load_model(tmp_path / name)
        assert isinstance(model, keras_vae.VAE) and model.latent_dim == 8
    assert any((tmp_path / "logs").rglob("events.out.tfevents.*"))
    assert not (tmp_path / "backup").exists()  # BackupAndRestore cleans up after a finished fit
