"""model.output_bias = "data_mean": the decoder's logits start at the logit of the smoothed training mean."""
import keras
import numpy as np
import pytest
from scipy.special import expit, logit

from keras_vae.config import merge
from keras_vae.errors import ConfigError
from keras_vae.models import VAE
from keras_vae.models.output_bias import initialize_output_bias, smoothed_mean
from keras_vae.config.presets import get_preset


def small_vae(**model):
    config = merge(get_preset("tiny-vae"), {"model": {"image_shape": (4, 5, 1), "hidden_units": (8,), "latent_dim": 2,
                                                      **model}})
    keras.utils.set_random_seed(0)
    return VAE(config.model, config.loss, seed=0)


def batches(seed=0, shape=(4, 5, 1)):
    rng = np.random.default_rng(seed)
    p = rng.random(shape)  # a different "on" rate per pixel; two all-zero pixels
    p.reshape(-1)[:2] = 0.0
    return [(rng.random((n, *shape)) < p).astype(np.float32) for n in (7, 3, 5)]


def test_smoothed_mean_is_laplace_smoothed_pixel_frequency():
    xs = batches()
    stacked = np.concatenate(xs).astype(np.float64)  # 0/1 counts: exact in float64
    expected = (stacked.sum(axis=0) + 1) / (len(stacked) + 2)
    np.testing.assert_allclose(smoothed_mean(xs), expected, rtol=1e-12)
    assert smoothed_mean(xs).reshape(-1)[:2] == pytest.approx([1 / 17, 1 / 17])  # never on: finite logit


def test_data_mean_sets_mlp_bias_per_pixel_and_the_decoder_starts_at_the_mean():
    model = small_vae(output_bias="data_mean")
    xs = batches()
    value = initialize_output_bias(model, xs)
    mean = smoothed_mean(xs)
    params = model.decoder.get_layer("params")
    np.testing.assert_allclose(params.bias.numpy(), logit(mean).reshape(-1), rtol=1e-6)
    np.testing.assert_array_equal(params.bias.numpy(), value)
    # with the last layer's kernel zeroed, every code decodes to the smoothed mean image
    params.kernel.assign(np.zeros(params.kernel.shape, np.float32))
    decoded = model.decode_output_to_image(model.decoder(np.random.default_rng(1).normal(size=(3, 2))))
    np.testing.assert_allclose(np.asarray(decoded), np.broadcast_to(mean, (3, *mean.shape)), rtol=1e-5)


def test_data_mean_sets_conv_bias_per_channel():
    model = small_vae(output_bias="data_mean", architecture="conv", image_shape=(8, 8, 1), conv_filters=(4,))
    xs = batches(shape=(8, 8, 1))
    initialize_output_bias(model, xs)
    bias = model.decoder.get_layer("params").bias.numpy()
    assert bias.shape == (1,)
    np.testing.assert_allclose(expit(bias), [smoothed_mean(xs).mean()], rtol=1e-5)


def test_zero_leaves_keras_zero_bias():
    model = small_vae()
    assert model.model_config.output_bias == "zero"
    assert initialize_output_bias(model, batches()) is None
    np.testing.assert_array_equal(model.decoder.get_layer("params").bias.numpy(), 0.0)


@pytest.mark.parametrize("overrides, words", [
    ({"model": {"output_bias": "mean"}}, "output_bias"),
    ({"model": {"output_bias": "data_mean", "likelihood": "gaussian"}}, "bernoulli"),
])
def test_bad_output_bias_is_a_config_error(overrides, words):
    with pytest.raises(ConfigError, match=words):
        merge(get_preset("tiny-vae"), overrides)


def test_empty_training_set_is_a_config_error():
    with pytest.raises(ConfigError, match="empty"):
        initialize_output_bias(small_vae(output_bias="data_mean"), [])


@pytest.mark.slow
def test_train_starts_the_logits_at_the_data_mean(tmp_path):
    """Wiring: ``train`` sets the bias before the first step. A corner pixel is never on in the embedded digits,
    so its bias is logit(1 / (N + 2)) exactly; one step at lr 1e-9 moves it by about 1e-9."""
    from keras_vae.training.loop import train

    config = merge(get_preset("tiny-vae"), {"model": {"output_bias": "data_mean"},
                                            "train": {"epochs": 1, "steps_per_epoch": 1, "learning_rate": 1e-9,
                                                      "iwae_samples": 2, "iwae_examples": 8}})
    result = train(config, tmp_path / "run", verbose=0)
    bias = result.model.decoder.get_layer("params").bias.numpy().reshape(config.model.image_shape)
    corner = np.float32(logit(1.0 / (result.metrics["num_train"] + 2)))
    np.testing.assert_allclose(bias[0, 0, 0], corner, rtol=0, atol=4 * np.spacing(abs(corner)) + 1e-8)
    assert expit(bias[14, 14, 0]) > 0.1  # the centre is often on: far above the corners' 1 / (N + 2)
