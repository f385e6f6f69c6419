"""The models the Keras way: keyword construction, from_preset (the CLI's model), compile() / fit(x) on NumPy
digits, sample, save/load (files saved before these keywords existed included), and the data-mean output bias
set by the first fit exactly as `keras-vae train` sets it."""
from __future__ import annotations

import json
import warnings
import zipfile

import keras
import numpy as np
import pytest
from scipy.special import logit

import keras_vae
from keras_vae.config import merge
from keras_vae.config.presets import get_preset
from keras_vae.errors import ConfigError, DataError
from keras_vae.models import build_model
from keras_vae.models.output_bias import smoothed_mean


def digits(n=300):
    """The first ``n`` embedded MNIST digits as float32 (n, 28, 28, 1) in [0, 1]."""
    from keras_vae.data.embedded import load_embedded_mnist

    images, _ = load_embedded_mnist()
    return images[:n, ..., None].astype("float32") / 255.0


class BiasAt(keras.callbacks.Callback):
    """Records the decoder's output bias when fit starts (after fit's own preparation, before any step) and
    after the first batch; ``abort`` raises after that batch (a run that should go no further)."""

    def __init__(self, abort=False):
        super().__init__()
        self.abort, self.start, self.first_batch = abort, None, None

    def on_train_begin(self, logs=None):
        self.start = self.model.decoder.get_layer("params").bias.numpy().copy()

    def on_train_batch_end(self, batch, logs=None):
        if self.first_batch is None:
            self.first_batch = self.model.decoder.get_layer("params").bias.numpy().copy()
            if self.abort:
                raise _Stop()


class _Stop(Exception):
    pass


def _config_without_name(model):
    return {k: v for k, v in model.get_config().items() if k != "name"}


@pytest.mark.slow
def test_keywords_compile_fit_numpy_sample_save_and_load(tmp_path):
    x = digits(300)
    keras.utils.set_random_seed(0)
    vae = keras_vae.VAE(latent_dim=8)  # the rest: the mnist-mlp preset, output_bias="data_mean" included
    assert vae.latent_dim == 8 and vae.model_config.output_bias == "data_mean" and vae.output_bias_pending
    vae.compile()
    assert isinstance(vae.optimizer, keras.optimizers.Adam)
    assert float(vae.optimizer.learning_rate) == pytest.approx(get_preset("mnist-mlp").train.learning_rate)
    seen = BiasAt()
    history = vae.fit(x, epochs=1, batch_size=100, verbose=0, callbacks=[seen])
    assert np.isfinite(history.history["loss"][0]) and np.isfinite(history.history["elbo"][0])
    # the first fit set the bias before its first step, from the images it was given (as `keras-vae train` does)
    np.testing.assert_allclose(seen.start, logit(smoothed_mean([x])).reshape(-1).astype(np.float32), rtol=1e-6)
    assert not vae.output_bias_pending

    samples = np.asarray(vae.sample(16, seed=0))
    assert samples.shape == (16, 28, 28, 1) and np.all((samples >= 0) & (samples <= 1))
    vae.save(tmp_path / "vae.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = keras.models.load_model(tmp_path / "vae.keras")
    assert not [w for w in caught if "compile()" in str(w.message)]  # the optimizer came back too
    assert isinstance(loaded, keras_vae.VAE) and loaded.latent_dim == 8
    assert int(loaded.optimizer.iterations.numpy()) == int(vae.optimizer.iterations.numpy()) == 3
    np.testing.assert_array_equal(np.asarray(loaded.sample(16, seed=0)), samples)
    assert not loaded.output_bias_pending  # its next fit keeps the trained bias


@pytest.mark.slow
def test_fit_sets_the_bias_from_the_training_part_of_a_validation_split():
    x = digits(200)
    vae = keras_vae.VAE(latent_dim=2, hidden_units=(16,))
    vae.compile()
    seen = BiasAt()
    vae.fit(x, epochs=1, batch_size=100, validation_split=0.25, verbose=0, callbacks=[seen])
    np.testing.assert_allclose(seen.start, logit(smoothed_mean([x[:150]])).reshape(-1).astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize("cls, preset", [("VAE", "mnist-mlp"), ("VAEGAN", "mnist-28")])
def test_from_preset_is_the_model_the_cli_builds(cls, preset):
    from keras_vae.cli import build_parser
    from keras_vae.commands.options import resolve_config

    args = build_parser().parse_args(["train", "--preset", preset])
    cli = build_model(resolve_config(args))  # what keras_vae.training.loop.train builds for `keras-vae train`
    model = getattr(keras_vae, cls).from_preset(preset)
    assert type(model) is type(cli)
    assert _config_without_name(model) == _config_without_name(cli)
    assert model.count_params() == cli.count_params() > 0
    assert model.train_config.learning_rate == get_preset(preset).train.learning_rate
    # keyword construction starts from the class's default preset, which is the CLI's default for the kind
    assert _config_without_name(getattr(keras_vae, cls)()) == _config_without_name(cli)


def test_from_preset_overrides_and_vaegan_compile_uses_the_model_optimizer_fields():
    model = keras_vae.VAEGAN.from_preset("mnist-28", latent_dim=8, disc_learning_rate=1e-4)
    assert model.latent_dim == 8 and model.loss_config == get_preset("mnist-28").loss
    model.compile()
    assert float(model.g_optimizer.learning_rate) == pytest.approx(4e-3)
    assert float(model.d_optimizer.learning_rate) == pytest.approx(1e-4)
    assert float(model.d_optimizer.beta_1) == pytest.approx(0.5)


@pytest.mark.parametrize("make, words", [
    (lambda: keras_vae.VAE(latnt_dim=8), ["'latnt_dim'", "did you mean 'latent_dim'"]),
    (lambda: keras_vae.VAE(colour=3), ["unknown VAE keyword 'colour'", "'latent_dim'", "'likelihood'"]),
    (lambda: keras_vae.VAE(likelihood="poisson"), ["likelihood 'poisson'", "'bernoulli', 'gaussian' or 'laplace'"]),
    (lambda: keras_vae.VAE(latent_dim="eight"), ["latent_dim='eight'", "an integer"]),
    (lambda: keras_vae.VAE(latent_dim=0), ["latent_dim must be in [1, 65536]"]),
    (lambda: keras_vae.VAE(learning_rate=-1.0), ["learning_rate must be > 0"]),
    (lambda: keras_vae.VAE(epochs=3), ["'epochs' is a setting of the training run", "model.fit(x, epochs="]),
    (lambda: keras_vae.VAEGAN(num_stages=3), ["cannot be halved num_stages=3 times"]),
    (lambda: keras_vae.VAE(kind="vaegan"), ["VAE builds model kind 'vae'", "use keras_vae.VAEGAN"]),
    (lambda: keras_vae.VAE.from_preset("mnist-28"), ["keras_vae.VAEGAN.from_preset('mnist-28')", "'mnist-mlp'"]),
    (lambda: keras_vae.VAE.from_preset("mnist"), ["unknown preset 'mnist'", "'mnist-mlp'"]),
])
def test_bad_keywords_name_the_field_and_the_fix(make, words):
    with pytest.raises(ConfigError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_fit_names_the_fix_for_images_it_cannot_train_on():
    vae = keras_vae.VAE(latent_dim=2, hidden_units=(8,), output_bias="zero")
    vae.compile()
    raw = (digits(4) * 255).round().astype(np.uint8)
    with pytest.raises(DataError, match=r"add the channel axis \(x\[\.\.\., None\]\)"):
        vae.fit(raw[..., 0].astype("float32") / 255, verbose=0)
    with pytest.raises(DataError, match=r"uint8; this model takes float images in \[0, 1\]: pass x / 255"):
        vae.fit(raw, verbose=0)
    with pytest.raises(DataError, match=r"values in \[0, 255\].*pass x / 255"):
        vae.fit(raw.astype("float32"), verbose=0)


@pytest.mark.slow
def test_data_mean_from_one_epoch_of_a_repeated_dataset_or_the_explicit_call():
    import tensorflow as tf

    x = digits(64)
    vae = keras_vae.VAE(latent_dim=2, hidden_units=(8,))
    vae.compile()
    repeated = tf.data.Dataset.from_tensor_slices(x).batch(16).repeat()
    with pytest.raises(ConfigError, match=r"repeats forever .*call model\.initialize_output_bias\(images\)"):
        vae.initialize_output_bias(repeated)
    seen = BiasAt()
    vae.fit(repeated, steps_per_epoch=2, verbose=0, callbacks=[seen])  # one epoch: the first two batches
    np.testing.assert_allclose(seen.start, logit(smoothed_mean([x[:32]])).reshape(-1), rtol=1e-6)

    other = keras_vae.VAE(latent_dim=2, hidden_units=(8,))
    other.compile()
    batches = ((x[i:i + 16],) for i in range(0, 64, 16))  # Keras takes (inputs,) tuples from a generator
    with pytest.raises(ConfigError, match=r"cannot read a generator twice: call model\.initialize_output_bias"):
        other.fit(batches, steps_per_epoch=1, verbose=0)
    value = other.initialize_output_bias(x)  # the documented one-line call
    np.testing.assert_allclose(value, logit(smoothed_mean([x])).reshape(-1), rtol=1e-6)
    seen = BiasAt()
    other.fit(batches, steps_per_epoch=1, verbose=0, callbacks=[seen])
    np.testing.assert_array_equal(seen.start, value)


def test_keras_files_saved_before_the_keywords_still_load(tmp_path):
    """A .keras file whose config has no train_config / output_bias_initialized (as saved before) loads with
    the same outputs, and counts as initialised (such files were written by training runs)."""
    config = merge(get_preset("tiny-vae"), {"model": {"output_bias": "data_mean"}})
    model = build_model(config)
    model.initialize_output_bias(digits(50))
    new = tmp_path / "new.keras"
    model.save(new)
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(new) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                saved = json.loads(data)
                for key in ("train_config", "output_bias_initialized"):
                    del saved["config"][key]
                data = json.dumps(saved).encode()
            dst.writestr(item, data)
    loaded = keras.models.load_model(old)
    x = digits(5)
    np.testing.assert_array_equal(np.asarray(loaded.reconstruct(x)), np.asarray(model.reconstruct(x)))
    assert loaded.model_config == model.model_config and loaded.output_bias_initialized


@pytest.mark.slow
def test_python_route_and_cli_route_start_from_the_same_output_bias(tmp_path):
    """README 'From Python' (VAE(config.model, config.loss) + compile + fit on make_datasets) against
    keras_vae.train (what the CLI runs), mnist-mlp preset on 600 digits: the decoder's output bias after the
    first batch. Both start from the same data-mean bias; each first Adam step moves a bias entry by at most
    its learning rate (m_hat / sqrt(v_hat) = g / |g| at step 1), so they differ by at most the two rates."""
    from keras_vae.data import make_datasets
    from keras_vae.training.loop import train

    config = merge(get_preset("mnist-mlp"), {"data": {"max_examples": 600}})
    cli_seen = BiasAt(abort=True)
    with pytest.raises(_Stop):
        train(config, tmp_path / "run", verbose=0, callbacks=[cli_seen])

    keras.utils.set_random_seed(config.train.seed)  # as train does: the same shuffle and binarization
    data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                         batch_size=config.train.batch_size, seed=config.train.seed)
    vae = keras_vae.VAE(config.model, config.loss, seed=0)
    vae.compile(optimizer=keras.optimizers.Adam(1e-3))
    python_seen = BiasAt()
    vae.fit(data.train, validation_data=data.validation, epochs=1, steps_per_epoch=1, verbose=0,
            callbacks=[python_seen])

    np.testing.assert_array_equal(python_seen.start, cli_seen.start)
    assert np.min(python_seen.start) < -5  # logit(1 / (N + 2)) at the never-inked corners, not Keras' zero
    bound = config.train.learning_rate + 1e-3
    np.testing.assert_allclose(python_seen.first_batch, cli_seen.first_batch, rtol=0, atol=bound * (1 + 1e-3))
