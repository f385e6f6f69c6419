"""The default job's recipe options: IWAE objective, cosine learning rate, best-epoch keeping, weight decay."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from scipy.special import logsumexp

from keras_vae.config import merge
from keras_vae.errors import ConfigError
from keras_vae.models import VAE
from keras_vae.config.presets import get_preset
from keras_vae.training.recipe import CosineLearningRate, KeepBestWeights, cosine_learning_rate, recipe_callbacks


def small_vae(**loss):
    config = merge(get_preset("tiny-vae"), {"model": {"image_shape": (4, 4, 1), "hidden_units": (8,), "latent_dim": 2},
                                            "loss": loss})
    keras.utils.set_random_seed(0)
    return VAE(config.model, config.loss, seed=0), config


def binary(n, seed=0):
    return (np.random.default_rng(seed).random((n, 4, 4, 1)) > 0.5).astype(np.float32)


def test_iwae_loss_is_minus_log_mean_exp_of_the_log_weights():
    model, _ = small_vae(objective="iwae", num_samples=7)
    x = binary(5)
    model.seed_generator = keras.random.SeedGenerator(11)
    log_px, log_ratio, _ = (t.numpy() for t in model.iwae_terms(x))
    model.seed_generator = keras.random.SeedGenerator(11)  # the same z for the loss
    loss, _, _ = model._per_example_loss(x, tf.constant(1.0), training=False)
    expected = -(logsumexp(log_px + log_ratio, axis=0) - np.log(7))
    np.testing.assert_allclose(loss.numpy(), expected, rtol=1e-5)


def test_iwae_terms_give_the_elbo_and_its_bound_ordering():
    model, _ = small_vae(objective="iwae", num_samples=64)
    x = binary(8, seed=1)
    log_px, log_ratio, kl = (t.numpy() for t in model.iwae_terms(x))
    # E_q[log p(z) - log q(z|x)] = -KL: the sample mean agrees within its Monte Carlo error
    mc = log_ratio.mean(0)
    stderr = log_ratio.std(0) / np.sqrt(64)
    assert np.all(np.abs(mc + kl) < 5 * stderr + 1e-4)
    iwae = logsumexp(log_px + log_ratio, axis=0) - np.log(64)
    assert np.all(iwae >= (log_px + log_ratio).mean(0))  # Jensen: log-mean-exp >= mean


@pytest.mark.slow
def test_one_sample_iwae_is_the_single_sample_elbo_and_fit_runs():
    model, config = small_vae(objective="iwae", num_samples=1)
    x = binary(5, seed=2)
    model.seed_generator = keras.random.SeedGenerator(5)
    log_px, log_ratio, _ = (t.numpy() for t in model.iwae_terms(x))
    model.seed_generator = keras.random.SeedGenerator(5)
    loss, _, _ = model._per_example_loss(x, tf.constant(1.0), training=False)
    np.testing.assert_allclose(loss.numpy(), -(log_px + log_ratio)[0], rtol=1e-5)
    model.compile_for_training(config.train)
    history = model.fit(binary(64), epochs=1, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.slow
def test_cosine_learning_rate_closed_form_and_callback():
    assert cosine_learning_rate(0, 10, 1e-3) == pytest.approx(1e-3)
    assert cosine_learning_rate(5, 10, 1e-3) == pytest.approx(0.5e-3)
    assert cosine_learning_rate(9, 10, 1e-3) == pytest.approx(1e-3 * (1 + math.cos(0.9 * math.pi)) / 2)
    model, config = small_vae()
    model.compile_for_training(config.train)
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(float(model.optimizer.learning_rate.numpy()))

    model.fit(binary(32), epochs=3, batch_size=16, verbose=0, callbacks=[CosineLearningRate(2e-3, 3), Spy()])
    np.testing.assert_allclose(seen, [cosine_learning_rate(e, 3, 2e-3) for e in range(3)], rtol=1e-6)


def test_keep_best_restores_the_best_epoch_weights():
    model, config = small_vae()
    model.compile_for_training(config.train)
    record = {}
    keeper = KeepBestWeights(record)
    keeper.set_model(model)
    weights = [w.copy() for w in model.get_weights()]
    keeper.on_epoch_end(0, {"val_elbo": -10.0})
    model.set_weights([w + 1.0 for w in weights])
    keeper.on_epoch_end(1, {"val_elbo": -12.0})  # worse: not kept
    keeper.on_train_end()
    for restored, original in zip(model.get_weights(), weights):
        np.testing.assert_array_equal(restored, original)
    assert record["kept_epoch"] == 1
    with pytest.raises(ConfigError, match="keep_best needs the validation metric"):
        keeper.on_epoch_end(2, {"loss": 1.0})


def test_recipe_callbacks_follow_the_configuration():
    config = merge(get_preset("tiny-vae"), {"train": {"lr_schedule": "cosine", "keep_best": True}})
    kinds = [type(c) for c in recipe_callbacks(config, {})]
    assert kinds == [CosineLearningRate, KeepBestWeights]
    assert recipe_callbacks(get_preset("tiny-vae"), {}) == []
    with pytest.raises(ConfigError, match="only the classic VAE"):
        recipe_callbacks(merge(get_preset("tiny"), {"train": {"keep_best": True}}), {})
    with pytest.raises(ConfigError, match="unknown objective"):
        merge(get_preset("tiny-vae"), {"loss": {"objective": "vimco"}})
    with pytest.raises(ConfigError, match="unknown lr_schedule"):
        merge(get_preset("tiny-vae"), {"train": {"lr_schedule": "step"}})


def test_weight_decay_shrinks_weights_without_gradient():
    # decoupled decay: w <- w - lr * wd * w on each step, even where the gradient is zero
    model, config = small_vae()
    config = merge(config, {"train": {"weight_decay": 0.5, "learning_rate": 0.1}})
    model.compile_for_training(config.train)
    var = model.decoder.trainable_variables[0]
    before = var.numpy().copy()
    model.optimizer.apply([tf.zeros_like(v) for v in model.trainable_variables], model.trainable_variables)
    np.testing.assert_allclose(var.numpy(), before * (1 - 0.1 * 0.5), rtol=1e-6)


@pytest.mark.slow
def test_cosine_learning_rate_drives_the_vaegan_generator_optimizer():
    """The schedule sets the VAEGAN's g_optimizer (it has no ``model.optimizer``), and leaves the
    discriminator's learning rate alone."""
    from tests.support.vaegan import images, make

    model = make()
    d_rate = float(model.d_optimizer.learning_rate.numpy())
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append((float(model.g_optimizer.learning_rate.numpy()),
                         float(model.d_optimizer.learning_rate.numpy())))

    model.fit(images(8), epochs=3, batch_size=8, verbose=0, callbacks=[CosineLearningRate(2e-3, 3), Spy()])
    np.testing.assert_allclose([g for g, _ in seen], [cosine_learning_rate(e, 3, 2e-3) for e in range(3)], rtol=1e-6)
    assert all(d == d_rate for _, d in seen)
