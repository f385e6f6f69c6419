"""benchmarks.anomaly_protocols: its recipes (both presets), its DeLong AUC and (slow) one tiny pass of the protocols
with the default preset."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.anomaly_protocols import ONE_CLASS_PRESETS, delong, parse_args, recipe


def test_delong_matches_the_hand_computed_auc_and_standard_error():
    # anomalies 2, 3 against normals 1, 2.5: pairs (2>1, 2<2.5, 3>1, 3>2.5) -> AUC 3/4; the structural
    # components are V10 = (1/2, 1) and V01 = (1, 1/2), each of sample variance 1/8, so var = 1/16 + 1/16
    auc, se = delong(np.array([1.0, 2.0, 2.5, 3.0]), np.array([False, True, False, True]))
    assert auc == 0.75
    assert se == pytest.approx(np.sqrt(1 / 8), rel=1e-12)
    auc, _ = delong(np.array([1.0, 1.0]), np.array([True, False]))  # a tie counts one half
    assert auc == 0.5


def test_delong_auc_is_the_mann_whitney_statistic():
    from keras_vae.applications.anomaly import roc_auc

    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=300), 1)  # rounded: ties occur
    truth = rng.random(300) < 0.3
    assert delong(scores, truth)[0] == pytest.approx(roc_auc(scores, truth), abs=1e-12)


@pytest.mark.parametrize("preset", sorted(ONE_CLASS_PRESETS))
def test_one_class_recipe_trains_the_preset_on_one_digit(preset):
    exclude = [k for k in range(10) if k != 3]
    config = recipe(ONE_CLASS_PRESETS[preset], exclude, 50, 7, preset=preset)
    assert config.preset == preset
    assert config.model.architecture == {"mnist-mlp": "mlp", "mnist-conv": "conv"}[preset]
    assert config.model.latent_dim == {"mnist-mlp": 32, "mnist-conv": 16}[preset]
    assert config.train.epochs == ONE_CLASS_PRESETS[preset]
    assert (config.train.batch_size, config.train.seed) == (50, 7)
    assert config.train.lr_schedule == "cosine" and not config.train.keep_best
    assert list(config.data.exclude_labels) == exclude and config.data.binarize


def test_command_line_defaults_follow_the_one_class_preset():
    args = parse_args([])
    assert args.one_class_preset == "mnist-mlp" and args.one_class_epochs == ONE_CLASS_PRESETS["mnist-mlp"] == 20
    assert parse_args(["--one-class-preset", "mnist-conv"]).one_class_epochs == 100
    assert parse_args(["--one-class-preset", "mnist-conv", "--one-class-epochs", "3"]).one_class_epochs == 3
    assert args.loo_epochs == 5 and args.digits == list(range(10)) and args.images == "grey"


def test_synthetic_sets_are_the_same_images_grey_or_binarized():
    from benchmarks.anomaly_protocols import split_images, synthetic_sets

    grey_digits = split_images("validation", binarize=False)
    grey = synthetic_sets(grey_digits, 8, 0, binarize=False)
    binary = synthetic_sets(grey_digits, 8, 0, binarize=True)
    assert list(grey) == list(binary) and {"inverted digits", "uniform noise", "gaussian noise"} <= set(grey)
    for name, images in grey.items():
        assert images.shape == binary[name].shape == (8, 28, 28, 1) and 0.0 <= images.min() <= images.max() <= 1.0
        assert set(np.unique(binary[name])) <= {0.0, 1.0}
        # each binary pixel is a Bernoulli draw with the grey pixel's mean: the means agree within 5 standard
        # errors of 8 x 784 independent draws (sd <= 0.5 / sqrt(6272) = 0.0063)
        assert abs(binary[name].mean() - images.mean()) < 5 * 0.5 / np.sqrt(images.size)


@pytest.mark.slow
def test_one_tiny_pass_of_every_protocol(tmp_path):
    from benchmarks.anomaly_protocols import main

    argv = ["--digits", "1", "--one-class-epochs", "1", "--loo-epochs", "1", "--loo-max-examples", "300",
            "--iwae-samples", "2", "--ood-examples", "8", "--out", str(tmp_path)]
    assert main(argv) == 0
    result = json.loads((tmp_path / "anomaly_protocols.json").read_text())
    assert result["settings"]["one_class_preset"] == "mnist-mlp" and result["settings"]["images"] == "grey"
    (one,), (loo,) = result["one_class"], result["leave_one_out"]
    assert one["digit"] == 1 and 40 < one["normal"] < 80 and one["normal"] + one["anomalous"] == 500
    assert loo["anomalous"] > 0 and set(loo["ood"]) >= {"inverted digits", "uniform noise", "gaussian noise"}
    for row in (one, loo):
        for value in row["roc_auc"].values():
            assert 0.0 <= value["auc"] <= 1.0 and value["stderr"] >= 0.0
    assert "preset mnist-mlp, 1 epochs" in (tmp_path / "anomaly_protocols.md").read_text()
