"""Adversarial and reconstruction terms against NumPy."""
import numpy as np
import pytest
import tensorflow as tf

from keras_vae import losses

RNG = np.random.default_rng(1)
REAL = RNG.normal(size=(3, 4, 4, 1)).astype(np.float32) * 3
FAKE = RNG.normal(size=(3, 4, 4, 1)).astype(np.float32) * 3


def np_bce(label, logits):
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    return -(label * np.log(p) + (1 - label) * np.log(1 - p))


def test_mean_absolute_error_per_example():
    x = RNG.uniform(-1, 1, (2, 5, 5, 3)).astype(np.float32)
    y = RNG.uniform(-1, 1, (2, 5, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(losses.mean_absolute_error(x, y), np.abs(x - y).mean(axis=(1, 2, 3)), rtol=1e-6)


def test_bce_terms_match_numpy():
    np.testing.assert_allclose(losses.bce_generator_loss(FAKE), np_bce(1, FAKE).mean(axis=(1, 2, 3)), rtol=1e-5)
    expected = np_bce(1, REAL).mean(axis=(1, 2, 3)) + np_bce(0, FAKE).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(losses.bce_discriminator_loss(REAL, FAKE), expected, rtol=1e-5)
    # agrees with Keras' own BCE from logits
    keras_bce = tf.keras.losses.binary_crossentropy(np.ones_like(FAKE), FAKE, from_logits=True, axis=-1)
    np.testing.assert_allclose(losses.bce_generator_loss(FAKE), tf.reduce_mean(keras_bce, axis=(1, 2)), rtol=1e-5)


def test_bce_is_stable_for_large_logits():
    big = np.full((1, 2, 2, 1), 200.0, np.float32)
    assert float(losses.bce_generator_loss(-big)[0]) == pytest.approx(200.0)
    assert np.all(np.isfinite(losses.bce_discriminator_loss(big, -big)))


def test_hinge_terms_match_numpy():
    np.testing.assert_allclose(losses.hinge_generator_loss(FAKE), -FAKE.mean(axis=(1, 2, 3)), rtol=1e-5)
    expected = np.maximum(0, 1 - REAL).mean(axis=(1, 2, 3)) + np.maximum(0, 1 + FAKE).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(losses.hinge_discriminator_loss(REAL, FAKE), expected, rtol=1e-5)
    assert losses.generator_loss("hinge", FAKE).shape == (3,)
    np.testing.assert_allclose(losses.discriminator_loss("bce", REAL, FAKE),
                               losses.bce_discriminator_loss(REAL, FAKE))


def test_adaptive_weight_is_the_gradient_norm_ratio():
    g_rec = [np.array([3.0, 4.0], np.float32), np.array([[0.0]], np.float32)]  # norm 5
    g_adv = [np.array([1.0, 0.0], np.float32), np.array([[0.0]], np.float32)]  # norm 1
    assert float(losses.adaptive_adversarial_weight(g_rec, g_adv)) == pytest.approx(5 / (1 + 1e-4), rel=1e-6)
    zero = [np.zeros(2, np.float32)]
    assert float(losses.adaptive_adversarial_weight(g_rec[:1], zero)) == pytest.approx(1e4)  # clipped


def test_adaptive_weight_carries_no_gradient():
    v = tf.Variable([1.0, 2.0])
    with tf.GradientTape() as tape:
        w = losses.adaptive_adversarial_weight([v * 2.0], [tf.constant([1.0, 0.0])])
    assert tape.gradient(w, v) is None


def test_discriminator_accuracy():
    real = np.array([1.0, -1.0, 2.0, 3.0], np.float32)
    fake = np.array([-1.0, -2.0, 0.5, 1.0], np.float32)
    acc_real, acc_fake = losses.discriminator_accuracy(real, fake)
    assert float(acc_real) == 0.75 and float(acc_fake) == 0.5
