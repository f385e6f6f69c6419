"""Ablation: variant configs, sharpness figure, table, and the CLI end to end (tiny preset)."""
import json

import numpy as np
import pytest

from keras_vae.ablation import (VARIANTS, high_frequency_energy, markdown_table, summarize, variant_configs,
                                write_report)
from keras_vae.cli import main
from keras_vae.presets import get_preset


def test_variants_share_budget_and_seed_and_differ_only_in_loss_switches():
    config = get_preset("mnist-28")
    variants = variant_configs(config, steps=7, seed=3)
    assert list(variants) == ["standard-kl", "mixture-kl", "mixture-kl+varreg", "+patchgan"]
    for name, variant in variants.items():
        assert variant.model == config.model and variant.data == config.data
        assert (variant.train.epochs, variant.train.steps_per_epoch, variant.train.seed) == (1, 7, 3)
        assert variant.train.batch_size == config.train.batch_size
        for field in ("reconstruction_weight", "variance_weight", "adversarial_weight", "population_variance"):
            assert getattr(variant.loss, field) == getattr(config.loss, field)
    switches = [(v.loss.kl, v.loss.use_variance_regularizer, v.loss.use_discriminator) for v in variants.values()]
    assert switches == [("standard", False, False), ("population", False, False), ("population", True, False),
                        ("population", True, True)]


def test_high_frequency_energy():
    flat = np.full((2, 8, 8, 1), 0.3)
    assert high_frequency_energy(flat) == pytest.approx(0.0, abs=1e-20)
    ramp = np.broadcast_to(np.linspace(0, 1, 8)[None, None, :, None], (1, 8, 8, 1))  # x[i, j] = j / 7
    assert high_frequency_energy(ramp) == pytest.approx(0.0, abs=1e-12)  # linear: no curvature
    checker = (np.indices((8, 8)).sum(0) % 2).astype(float)[None, :, :, None]
    assert high_frequency_energy(checker) == pytest.approx(16.0)  # (4x - 4(1 - x))^2 = 16 at every pixel
    rng = np.random.default_rng(0)
    sharp = rng.uniform(size=(4, 16, 16, 1))
    blurred = (sharp + np.roll(sharp, 1, 1) + np.roll(sharp, 1, 2) + np.roll(sharp, (1, 1), (1, 2))) / 4
    assert high_frequency_energy(blurred) < 0.5 * high_frequency_energy(sharp)


class _Model:
    """Stands in for a trained model: reconstructions are the images blurred, samples are flat."""

    def to_unit(self, x):
        return (np.asarray(x) + 1) / 2

    def sample(self, n, seed=0):
        return np.zeros((n, 8, 8, 1), np.float32)

    def reconstruct(self, x):
        return np.asarray(x) * 0.5

    def predict_in_batches(self, fn, array):
        return fn(array)


def test_summarize_and_report(tmp_path):
    images = np.random.default_rng(1).uniform(-1, 1, (10, 8, 8, 1)).astype(np.float32)
    metrics = {"epochs": [{"diagnostics": {"active_units": 3, "latent_dim": 8, "mean_posterior_variance": 0.5,
                                           "mixture_mean_rms": 0.1, "mixture_variance_mean": 0.9}}],
               "train_seconds": 1.5}
    row = summarize(_Model(), metrics, images)
    expected_mae = np.abs((images * 0.5 + 1) / 2 - (images + 1) / 2).mean()
    assert row["reconstruction_mae"] == pytest.approx(expected_mae, rel=1e-5)
    assert row["sample_sharpness"] == 0.0
    assert row["reconstruction_sharpness"] == pytest.approx(0.25, rel=1e-5)  # half the contrast, a quarter the energy
    assert row["active_units"] == 3 and row["disc_accuracy_real"] is None
    rows = {name: row for name in VARIANTS}
    table = markdown_table(rows)
    assert table.count("\n") == 2 + len(VARIANTS)
    assert table.splitlines()[-1].startswith(f"| +patchgan | {expected_mae:.4g} | 3/8 | 0.5 | 0.1 | 0.9 | 0 | 0.25 |")
    assert "3/8" in table
    json_path, md_path = write_report(rows, tmp_path, {"preset": "tiny", "steps": 2, "batch_size": 8, "seed": 0})
    assert json.loads(json_path.read_text())["variants"]["mixture-kl"]["active_units"] == 3
    assert "# Ablation: tiny, 2 steps" in md_path.read_text()


def test_ablate_rejects_bad_input(capsys):
    assert main(["ablate", "--preset", "mnist-mlp", "--steps", "2"]) == 2
    assert "ablate needs a 'vaegan' preset" in capsys.readouterr().err
    assert main(["ablate", "--preset", "nope", "--steps", "2"]) == 2
    assert "unknown preset 'nope': choose" in capsys.readouterr().err
    assert main(["ablate", "--preset", "tiny", "--steps", "0"]) == 2


@pytest.mark.slow
def test_ablate_cli_end_to_end(tmp_path, capsys):
    assert main(["ablate", "--preset", "tiny", "--steps", "2", "--out", str(tmp_path), "--quiet"]) == 0
    report = json.loads((tmp_path / "ablation.json").read_text())
    assert list(report["variants"]) == list(VARIANTS)
    assert all(np.isfinite(row["reconstruction_mae"]) for row in report["variants"].values())
    assert (tmp_path / "plus-patchgan" / "model.keras").exists()
    assert "| standard-kl |" in capsys.readouterr().out


def test_tiny_preset_trains_end_to_end_through_the_cli(tmp_path, capsys):
    import keras

    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--out", str(out), "--quiet"]) == 0
    for name in ("model.keras", "config.json", "metrics.json", "samples.png", "reconstructions.png",
                 "interpolations.png", "traversals.png"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    diagnostics = metrics["epochs"][-1]["diagnostics"]
    assert {"disc_accuracy_real", "disc_accuracy_reconstructed", "active_units"} <= set(diagnostics)
    assert "val_loss" not in metrics["epochs"][-1]["train"] and "disc_loss" in metrics["epochs"][-1]["validation"]
    model = keras.models.load_model(out / "model.keras")
    steps = get_preset("tiny").train.steps_per_epoch
    assert int(model.g_optimizer.iterations) == steps and int(model.d_optimizer.iterations) == steps
