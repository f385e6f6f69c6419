"""BatchNorm and dropout semantics of the VAEGAN: whose statistics each sub-step moves, bn_mode,
validation's own seed stream, recomputed statistics (checked against NumPy)."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.config import LossConfig, ModelConfig
from keras_vae.models.batchnorm import batch_norm_layers, frozen_statistics, recompute_statistics
from keras_vae.models.vae import VAE
from keras_vae.models.vaegan import VAEGAN

from tests.support.vaegan import LOSS, MODEL, TRAIN, images, make  # the tiny VAEGAN and blobs of test_vaegan


def stats(*networks):
    return [np.array(v) for layer in batch_norm_layers(*networks) for v in (layer.moving_mean, layer.moving_variance)]


def same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_frozen_statistics_and_recompute_on_a_plain_batch_norm():
    layer = keras.layers.BatchNormalization(momentum=0.9)
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=i, scale=1 + i, size=(32, 3)).astype(np.float32) for i in range(3)]
    layer(batches[0], training=True)
    before = stats(layer)
    with frozen_statistics(layer):
        layer(batches[1], training=True)
        tf.function(lambda x: layer(x, training=True))(batches[2])
    assert same(before, stats(layer)) and layer.momentum == 0.9
    used = recompute_statistics([layer], lambda x, step: layer(x, training=True), batches)
    assert used == 3 and layer.momentum == 0.9
    expected_mean = np.mean([b.mean(axis=0) for b in batches], axis=0)
    expected_var = np.mean([b.var(axis=0) for b in batches], axis=0)  # biased batch variances, as Keras
    np.testing.assert_allclose(layer.moving_mean, expected_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.moving_variance, expected_var, rtol=1e-5, atol=1e-6)


def test_each_substep_moves_only_its_own_networks_statistics():
    model, x = make(), tf.constant(images(8))
    vae_nets, disc = (model.encoder, model.decoder), (model.discriminator,)
    v0, d0 = stats(*vae_nets), stats(*disc)
    model.discriminator_step(x)
    assert same(v0, stats(*vae_nets)), "the discriminator step moved the VAE's BatchNorm statistics"
    assert not same(d0, stats(*disc))
    d1 = stats(*disc)
    model.vae_step(x)
    assert same(d1, stats(*disc)), "the VAE step moved the discriminator's BatchNorm statistics"
    assert not same(v0, stats(*vae_nets))


def test_train_step_moves_discriminator_statistics_once_with_its_own_batch():
    """With momentum 0 the moving mean of D's first BatchNorm is the batch mean of its last update:
    it must be D's own step (real + reconstructions, conv kernel before the update), not the pass
    inside the VAE's loss (kernel after the update)."""
    model = make(loss=dict(sample_posterior=False))
    x = tf.constant(images(8))
    bn0, conv0 = model.discriminator.get_layer("bn0"), model.discriminator.get_layer("conv0")
    bn0.momentum = 0.0
    kernel = np.array(conv0.kernel)
    _, _, output, _ = model._forward(x, model._step_seeds(), training=True)
    batch = tf.concat([x, output], 0)  # D trains on the decoder's linear output
    expected = np.mean(np.asarray(tf.nn.conv2d(batch, kernel, strides=2, padding="SAME")), axis=(0, 1, 2))
    model.train_step(x)
    assert not np.array_equal(kernel, np.array(conv0.kernel))
    np.testing.assert_allclose(np.array(bn0.moving_mean), expected, rtol=1e-4, atol=1e-5)


def test_reference_bn_mode_never_updates_statistics_and_learns_the_affine_map():
    model, x = make(model=dict(bn_mode="reference")), tf.constant(images(8))
    layers = batch_norm_layers(model.encoder, model.decoder, model.discriminator)
    gammas = [np.array(layer.gamma) for layer in layers]
    for _ in range(2):
        model.train_step(x)
    for layer, gamma in zip(layers, gammas):
        assert np.all(np.array(layer.moving_mean) == 0) and np.all(np.array(layer.moving_variance) == 1)
        assert not np.array_equal(gamma, np.array(layer.gamma))
    assert model.recompute_batch_norm([images(8)]) == 0  # nothing to recompute: training used these


def test_reference_bn_mode_runs_the_discriminator_without_dropout():
    model = make(model=dict(bn_mode="reference", disc_dropout=0.5, disc_filters=(4, 4, 1), disc_strides=(2, 1, 1)))
    x = tf.constant(images(8))
    fakes = -x
    a = model._disc_logits(x, fakes, model._networks_training(True))
    b = model._disc_logits(x, fakes, False)
    np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b[0]))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["vaegan", "vae"])
def test_validation_does_not_change_the_trained_weights(kind):
    x = images(24)

    def trained(with_validation):
        keras.utils.set_random_seed(0)
        if kind == "vaegan":
            model = VAEGAN(ModelConfig(**MODEL), LossConfig(**LOSS), seed=0)
            model.compile_for_training(TRAIN)
        else:
            model = VAE(ModelConfig(kind="vae", architecture="mlp", image_shape=(16, 16, 1), latent_dim=4,
                                    hidden_units=(16,)), LossConfig(), seed=0)
            model.compile_for_training(TRAIN)
        data = (x + 1) / 2 if kind == "vae" else x
        model.fit(data[:16], batch_size=8, epochs=2, shuffle=False, verbose=0,
                  validation_data=(data[16:],) if with_validation else None)
        return [np.array(w) for w in model.weights]

    for a, b in zip(trained(False), trained(True)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_recomputed_statistics_make_inference_mode_match_training_mode():
    model, x = make(), tf.constant(images(16))
    for _ in range(3):
        model.train_step(x)
    train_mean, _ = model.encoder(x, training=True)
    before, _ = model.encoder(x, training=False)
    assert np.max(np.abs(np.asarray(before) - np.asarray(train_mean))) > 1e-3  # moving stats lag behind
    assert model.recompute_batch_norm([np.asarray(x)]) == 1
    after, _ = model.encoder(x, training=False)
    np.testing.assert_allclose(np.asarray(after), np.asarray(train_mean), rtol=1e-4, atol=1e-5)
