"""FusedBatchNormalization (the fused TF kernel in training mode) computes what keras.layers.BatchNormalization
computes: outputs, gradients, moving statistics, the frozen-statistics rule, and one VAEGAN train step."""
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.config.presets import get_preset
from keras_vae.models import build_model
from keras_vae.models.batchnorm import FusedBatchNormalization, batch_norm_layers, frozen_statistics


def _pair(shape, momentum=0.9):
    stock, fused = keras.layers.BatchNormalization(momentum=momentum), FusedBatchNormalization(momentum=momentum)
    for layer in (stock, fused):
        layer.build(shape)
        layer.gamma.assign(np.linspace(0.5, 2.0, shape[-1]).astype(np.float32))
        layer.beta.assign(np.linspace(-1.0, 1.0, shape[-1]).astype(np.float32))
    return stock, fused


def _train_call(layer, x):
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
        loss = tf.reduce_sum(tf.sin(y) * x)
    return y, tape.gradient(loss, [x, layer.gamma, layer.beta])


def test_training_mode_matches_keras_layer():
    x = tf.constant(np.random.default_rng(0).normal(2.0, 3.0, size=(4, 5, 5, 6)).astype(np.float32))
    stock, fused = _pair(x.shape)
    (y0, g0), (y1, g1) = _train_call(stock, x), _train_call(fused, x)
    np.testing.assert_allclose(y1, y0, atol=1e-5)
    for a, b in zip(g1, g0):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # moving statistics: momentum update with the biased batch variance, as Keras does
    np.testing.assert_allclose(fused.moving_mean, stock.moving_mean, atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance, stock.moving_variance, rtol=1e-5)
    batch_var = np.var(x.numpy(), axis=(0, 1, 2))
    np.testing.assert_allclose(fused.moving_variance, 0.9 + 0.1 * batch_var, rtol=1e-5)
    # inference mode is Keras' own code
    np.testing.assert_allclose(fused(x, training=False), stock(x, training=False), rtol=1e-5, atol=1e-5)


def test_frozen_statistics_and_momentum_zero_hold_for_the_fused_layer():
    x = tf.random.stateless_normal((8, 4, 4, 3), seed=(1, 2))
    _, fused = _pair(x.shape)
    before = fused.moving_mean.numpy().copy(), fused.moving_variance.numpy().copy()
    with frozen_statistics(fused):
        tf.function(lambda t: fused(t, training=True))(x)
    np.testing.assert_array_equal(fused.moving_mean, before[0])
    np.testing.assert_array_equal(fused.moving_variance, before[1])
    fused.momentum = 0.0  # recompute_statistics' rule: moving := this batch's (biased) statistics
    fused(x, training=True)
    np.testing.assert_allclose(fused.moving_mean, np.mean(x.numpy(), axis=(0, 1, 2)), atol=1e-6)
    np.testing.assert_allclose(fused.moving_variance, np.var(x.numpy(), axis=(0, 1, 2)), rtol=1e-5)


def _tiny_model():
    config = get_preset("tiny")
    keras.utils.set_random_seed(0)
    model = build_model(config)
    model.compile_for_training(config.train)
    return model, config


def test_vaegan_uses_the_fused_layer_everywhere():
    model, _ = _tiny_model()
    layers = batch_norm_layers(*model.batch_norm_networks())
    assert layers and all(isinstance(layer, FusedBatchNormalization) for layer in layers)


@pytest.mark.slow
def test_one_vaegan_train_step_equals_the_keras_batchnorm_step():
    """Losses of the step and the VAE's gradients equal within float32 round-off (fixed seeds, tiny preset)."""
    x = tf.random.stateless_uniform((8, 16, 16, 1), seed=(3, 4), minval=-1.0, maxval=1.0)
    results = []
    for keras_bn in (False, True):
        model, _ = _tiny_model()
        if keras_bn:
            for layer in batch_norm_layers(*model.batch_norm_networks()):
                layer.call = types.MethodType(keras.layers.BatchNormalization.call, layer)
        logs = tf.function(model.train_step)(x)
        results.append({k: float(v) for k, v in logs.items()})
    fused, stock = results
    assert fused.keys() == stock.keys()
    for name in fused:
        assert fused[name] == pytest.approx(stock[name], rel=1e-3, abs=1e-4), name


def test_mixed_bfloat16_matches_keras_layer_within_bfloat16_round_off():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        x = tf.cast(tf.random.stateless_normal((4, 5, 5, 6), seed=(5, 6)) * 3.0 + 2.0, tf.bfloat16)
        stock, fused = _pair(x.shape)
        (y0, g0), (y1, g1) = _train_call(stock, x), _train_call(fused, x)
        assert y1.dtype == y0.dtype == tf.bfloat16
        np.testing.assert_allclose(tf.cast(y1, tf.float32), tf.cast(y0, tf.float32), rtol=2e-2, atol=2e-2)
        for a, b in zip(g1[1:], g0[1:]):  # gamma, beta (float32 variables)
            np.testing.assert_allclose(a, b, rtol=5e-2, atol=5e-2)
        np.testing.assert_allclose(fused.moving_mean, stock.moving_mean, atol=1e-5)
        np.testing.assert_allclose(fused.moving_variance, stock.moving_variance, rtol=1e-4)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def _discriminator_keys(model_file) -> list[str]:
    import zipfile

    import h5py

    with zipfile.ZipFile(model_file) as archive, archive.open("model.weights.h5") as raw:
        with h5py.File(raw, "r") as weights:
            return sorted(weights["discriminator/layers"].keys())


def test_saved_weights_keep_the_keys_of_keras_batchnorm(trained_vaegan_run):
    # Keras keys a functional network's saved layers by snake-cased class name: the fused layer's class is
    # named BatchNormalization so run folders saved with Keras' own layer load (and new ones load in them)
    keys = _discriminator_keys(trained_vaegan_run / "model.keras")
    assert "batch_normalization" in keys and not any(k.startswith("fused_") for k in keys), keys


@pytest.mark.slow
def test_a_model_file_with_fused_batchnorm_keys_loads_with_the_same_weights(trained_vaegan_run, tmp_path):
    """Files saved while the class was named FusedBatchNormalization key those weights fused_batch_normalization[_k];
    keras_vae's loader renames them in a copy and loads it."""
    import shutil
    import zipfile

    import h5py

    from keras_vae.runs.folder import load_model

    original = load_model(trained_vaegan_run / "model.keras")
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(trained_vaegan_run / "model.keras") as archive:
        names = archive.namelist()
        archive.extractall(unpacked)
    with h5py.File(unpacked / "model.weights.h5", "r+") as weights:
        group = weights["discriminator/layers"]
        for key in [k for k in group.keys() if k.startswith("batch_normalization")]:
            group.move(key, "fused_" + key)
    window = tmp_path / "model.keras"
    with zipfile.ZipFile(window, "w") as out:
        for name in names:
            out.write(unpacked / name, name)
    assert any(k.startswith("fused_batch_normalization") for k in _discriminator_keys(window))
    with pytest.raises(Exception):  # what plain Keras makes of such a file
        keras.models.load_model(window)
    loaded = load_model(window)
    assert len(loaded.weights) == len(original.weights)
    for a, b in zip(original.weights, loaded.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    shutil.rmtree(unpacked)
