"""The classic VAE: IWAE estimator against quadrature, bound ordering, training, save/load, API."""
import keras
import numpy as np
import pytest
from scipy.special import logsumexp

from keras_vae.config import merge
from keras_vae.models import VAE
from keras_vae.config.presets import get_preset


def tiny_config(**model):
    return merge(get_preset("tiny-vae"), {"model": {"image_shape": (6, 6, 1), "hidden_units": (16,), **model}})


def binary_images(n, shape=(6, 6, 1), seed=0):
    # structured data: two fixed prototypes with 10% of pixels flipped, so a VAE has something to learn
    protos = np.random.default_rng(1234).random((2,) + shape) > 0.5
    rng = np.random.default_rng(seed)
    pick = protos[rng.integers(0, 2, n)]
    noise = rng.random((n,) + shape) < 0.1
    return (pick ^ noise).astype(np.float32)


@pytest.fixture(scope="module")
def one_dim_model():
    config = tiny_config(latent_dim=1)
    keras.utils.set_random_seed(3)
    model = VAE(config.model, config.loss, seed=3)
    model.compile_for_training(config.train)
    model.fit(binary_images(128), epochs=3, batch_size=32, verbose=0)
    return model


def test_iwae_converges_to_the_exact_log_likelihood(one_dim_model):
    """With a 1-D latent, log p(x) = log int p(x|z) N(z; 0, 1) dz is computable by quadrature."""
    model = one_dim_model
    x = binary_images(6, seed=1)
    grid = np.linspace(-9.0, 9.0, 4001, dtype=np.float32)
    dz = grid[1] - grid[0]
    params = model.decoder(grid[:, None]).numpy().reshape(len(grid), -1)  # Bernoulli logits
    log_pz = -0.5 * (grid**2 + np.log(2 * np.pi))
    flat = x.reshape(len(x), -1)
    log_px_z = flat @ (-np.logaddexp(0, -params)).T + (1 - flat) @ (-np.logaddexp(0, params)).T  # [N, G]
    exact = logsumexp(log_px_z + log_pz[None], axis=1) + np.log(dz)
    estimate = np.asarray(model.log_likelihood(x, num_samples=5000, chunk_size=1000, seed=0))
    np.testing.assert_allclose(estimate, exact, atol=0.1)  # a stochastic lower bound, tight at K = 5000
    assert abs(np.mean(estimate - exact)) < 0.05


def test_iwae_bound_is_above_elbo_and_grows_with_k(one_dim_model):
    x = binary_images(200, seed=2)
    elbo = np.mean(one_dim_model.elbo(x, num_samples=64, seed=0))
    ll = {k: np.mean(one_dim_model.log_likelihood(x, num_samples=k, seed=0)) for k in (1, 10, 100)}
    assert abs(ll[1] - elbo) < 0.5  # K = 1 is an unbiased ELBO estimate
    assert ll[1] < ll[10] < ll[100]
    assert ll[100] > elbo


def test_iwae_matches_numpy_formula_on_fixed_samples():
    config = tiny_config(latent_dim=3)
    model = VAE(config.model, config.loss, seed=0)
    x = binary_images(4)
    eps = np.random.default_rng(0).normal(size=(5, 4, 3)).astype(np.float32)
    mean, log_var = (t.numpy() for t in model.encode(x))
    z = mean + np.exp(0.5 * log_var) * eps
    logits = model.decoder(z.reshape(-1, 3)).numpy().reshape(5, 4, -1)
    flat = x.reshape(4, -1)
    log_px = np.sum(flat * -np.logaddexp(0, -logits) + (1 - flat) * -np.logaddexp(0, logits), axis=-1)
    log_pz = -0.5 * np.sum(z**2 + np.log(2 * np.pi), axis=-1)
    log_qz = -0.5 * np.sum((z - mean) ** 2 / np.exp(log_var) + log_var + np.log(2 * np.pi), axis=-1)
    np.testing.assert_allclose(model._log_weights(x, eps).numpy(), log_px + log_pz - log_qz, rtol=1e-4)


@pytest.mark.slow
def test_fit_reports_nats_and_improves_elbo():
    config = tiny_config(latent_dim=2)
    keras.utils.set_random_seed(0)
    model = VAE(config.model, config.loss, seed=0)
    model.compile_for_training(merge(config, {"train": {"learning_rate": 1e-2}}).train)
    x, x_val = binary_images(256), binary_images(64, seed=5)
    before = model.evaluate(x_val, batch_size=64, verbose=0, return_dict=True)
    history = model.fit(x, validation_data=(x_val,), epochs=5, batch_size=32, verbose=0).history
    after = model.evaluate(x_val, batch_size=64, verbose=0, return_dict=True)
    assert set(history) >= {"loss", "reconstruction", "kl", "elbo", "val_elbo"}
    np.testing.assert_allclose(after["elbo"], -(after["reconstruction"] + after["kl"]), rtol=1e-4)
    assert after["elbo"] > before["elbo"] + 2.0


def test_kl_warmup_ramps_beta():
    config = merge(tiny_config(), {"loss": {"kl_warmup_steps": 8, "beta": 0.5}})
    model = VAE(config.model, config.loss)
    model.compile_for_training(config.train)
    model.fit(binary_images(32), epochs=1, batch_size=8, verbose=0)  # 4 steps
    assert float(model.beta()) == pytest.approx(0.5 * 4 / 8)


@pytest.mark.slow
def test_save_load_roundtrip_and_resume(tmp_path):
    config = merge(tiny_config(likelihood="gaussian"), {"model": {"architecture": "conv", "conv_filters": (4,),
                                                                   "image_shape": (8, 8, 1)}})
    model = VAE(config.model, config.loss, seed=1)
    model.compile_for_training(config.train)
    x = binary_images(64, shape=(8, 8, 1))
    model.fit(x, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, VAE) and loaded.model_config == model.model_config
    np.testing.assert_array_equal(loaded.reconstruct(x[:5]).numpy(), model.reconstruct(x[:5]).numpy())
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations) == 4
    for a, b in zip(loaded.optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # both continue identically from the restored state (no sampling noise differences: same seeds)
    loaded.fit(x, epochs=1, batch_size=16, verbose=0)
    assert int(loaded.optimizer.iterations) == 8


def test_sample_is_reproducible_and_in_range():
    config = tiny_config()
    model = VAE(config.model, config.loss)
    a, b, c = model.sample(5, seed=1), model.sample(5, seed=1), model.sample(5, seed=2)
    assert a.shape == (5, 6, 6, 1)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.allclose(a.numpy(), c.numpy())
    assert 0.0 <= float(np.min(a)) and float(np.max(a)) <= 1.0
    mean, log_var = model.encode(binary_images(3))
    assert mean.shape == log_var.shape == (3, config.model.latent_dim)
