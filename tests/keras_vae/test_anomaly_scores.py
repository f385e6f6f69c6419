"""The complexity-corrected and likelihood-ratio anomaly scores, the perturbation behind the background
model, and threshold calibration on one half of the normal data with the realised rate on the other;
each against the formula recomputed independently (Pillow's PNG bytes, the models' IWAE estimates)."""
import io
import math

import numpy as np
import pytest
from PIL import Image

from keras_vae.applications.anomaly import (
    LatentGaussian,
    anomaly_scores,
    available_scores,
    calibrate,
    calibration_split,
    complexity_bits,
    fit_threshold,
    perturb,
    png_bytes,
)
from keras_vae.errors import ConfigError


@pytest.fixture(scope="module")
def vae(vae_run):
    from keras_vae.runs.folder import load_run

    return load_run(vae_run)[1]


@pytest.fixture(scope="module")
def other_vae(vae_run):
    """A second tiny VAE of the same configuration, untrained (another set of weights)."""
    from keras_vae.models import build_model
    from keras_vae.runs.folder import load_run_config

    model = build_model(load_run_config(vae_run))
    model.encode(np.zeros((1, 28, 28, 1), np.float32))
    model.decode(np.zeros((1, model.latent_dim), np.float32))
    return model


def _binary_digits(n=5):
    from keras_vae.data.embedded import load_embedded_mnist

    images = load_embedded_mnist()[0][::500][:n, :, :, None]
    return (images > 127).astype(np.float32)


def test_complexity_is_eight_times_the_png_bytes_of_the_8bit_image():
    x = np.array([[0.0, 0.2, 1.0], [0.5 / 255, 0.6 / 255, 1.0], [0.3, 0.3, 0.3]], np.float32)[None, :, :, None]
    x = np.concatenate([x, np.zeros_like(x)])
    quantised = [np.array([[0, 51, 255], [0, 1, 255], [76, 76, 76]], np.uint8), np.zeros((3, 3), np.uint8)]
    expected = []
    for q in quantised:  # written here with Pillow directly: grayscale PNG, zlib level 9
        buffer = io.BytesIO()
        Image.fromarray(q, mode="L").save(buffer, format="PNG", compress_level=9)
        expected.append(8.0 * len(buffer.getvalue()))
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(buffer.getvalue()))), q)
    np.testing.assert_array_equal(complexity_bits(x), expected)
    assert png_bytes(quantised[0][:, :, None]) == png_bytes(quantised[0][:, :, None])  # deterministic
    # a noisier image costs more bits than a blank one of the same size
    noise = np.random.default_rng(0).random((1, 28, 28, 1))
    assert complexity_bits(noise)[0] > complexity_bits(np.zeros((1, 28, 28, 1)))[0] + 8 * 500
    with pytest.raises(ConfigError, match="uint8 images"):
        png_bytes(np.zeros((3, 3, 2), np.uint8))


def test_complexity_corrected_and_likelihood_ratio_follow_their_formulas(vae, other_vae):
    x = _binary_digits()
    latent = LatentGaussian.fit(np.random.default_rng(0).normal(size=(20, vae.latent_dim)))
    scores = anomaly_scores(vae, x, latent, iwae_samples=6, elbo_samples=2, seed=3, background=other_vae)
    assert tuple(scores) == available_scores(vae, other_vae) == (
        "neg_elbo", "iwae_nll", "reconstruction_error", "mahalanobis", "complexity_corrected", "likelihood_ratio")
    log_p = np.asarray(vae.log_likelihood(x, num_samples=6, seed=3), np.float64)
    log_p_bg = np.asarray(other_vae.log_likelihood(x, num_samples=6, seed=3), np.float64)
    png = []
    for image in x:
        buffer = io.BytesIO()
        Image.fromarray((image[:, :, 0] * 255).astype(np.uint8)).save(buffer, format="PNG", compress_level=9)
        png.append(8 * len(buffer.getvalue()))
    np.testing.assert_allclose(scores["complexity_corrected"], -log_p / math.log(2) - np.array(png), rtol=1e-6)
    np.testing.assert_allclose(scores["likelihood_ratio"], -(log_p - log_p_bg), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(scores["iwae_nll"], -log_p, rtol=1e-6)
    # the two scores differ: a wrong sign or a swapped model would not pass both lines above
    assert np.abs(log_p - log_p_bg).max() > 1.0


def test_likelihood_ratio_needs_a_background_with_a_likelihood(vae):
    x = _binary_digits(2)
    latent = LatentGaussian.fit(np.random.default_rng(0).normal(size=(20, vae.latent_dim)))
    assert "likelihood_ratio" not in available_scores(vae)
    assert "complexity_corrected" in available_scores(vae)
    with pytest.raises(ConfigError, match="needs a background model"):
        anomaly_scores(vae, x, latent, scores=["likelihood_ratio"])

    class NoLikelihood:
        pass

    with pytest.raises(ConfigError, match="has no likelihood"):
        anomaly_scores(vae, x, latent, scores=["iwae_nll"], background=NoLikelihood())


def test_perturb_replaces_the_given_fraction_of_pixels_by_8bit_uniform_noise():
    x = np.full((50, 20, 20, 1), 0.5 + 1e-3, np.float32)  # off the 8-bit grid: every replacement differs
    y = perturb(x, 0.2, seed=1)
    hit = y != x
    n = hit.size
    # binomial(n, 0.2): 5 standard deviations
    assert abs(hit.mean() - 0.2) < 5 * math.sqrt(0.2 * 0.8 / n)
    noise = y[hit] * 255
    np.testing.assert_allclose(noise, np.rint(noise), atol=1e-4)
    # uniform over 256 levels: mean 127.5, sd 73.9; 5 standard errors
    assert abs(noise.mean() - 127.5) < 5 * 73.9 / math.sqrt(len(noise))
    np.testing.assert_array_equal(perturb(x, 0.2, seed=1), y)
    rgb = perturb(np.full((4, 6, 6, 3), 0.5 + 1e-3, np.float32), 0.5, seed=0)
    changed = rgb != 0.5 + np.float32(1e-3)
    assert np.array_equal(changed.all(-1), changed.any(-1))  # a pixel is replaced in every channel or none
    with pytest.raises(ConfigError, match=r"perturbation rate must be in \(0, 1\)"):
        perturb(x, 1.5)


def test_calibration_on_one_half_and_realised_rate_on_the_other():
    rng = np.random.default_rng(0)
    scores = {"a": rng.normal(size=101), "b": rng.exponential(size=101)}
    cal, check = calibration_split(101, seed=7)
    assert len(cal) == 51 and len(check) == 50
    assert sorted(np.concatenate([cal, check]).tolist()) == list(range(101))
    result = calibrate(scores, 0.1, seed=7)
    assert result["calibration_examples"] == 51 and result["check_examples"] == 50
    for name, v in scores.items():
        t = fit_threshold(v[cal], 0.1)
        assert result["thresholds"][name] == t
        # ceil(0.9 * 51) = 46th smallest: 5 of 51 above it
        assert result["calibration_flag_rate"][name] == pytest.approx(5 / 51)
        assert result["realised_fpr"][name] == pytest.approx(np.mean(v[check] > t))
    with pytest.raises(ConfigError, match="at least 2 normal"):
        calibration_split(1)


@pytest.mark.slow
def test_train_background_trains_the_run_recipe_on_perturbed_images(vae_run, tmp_path, monkeypatch):
    from keras_vae.applications.anomaly import train_background
    from keras_vae.runs.folder import load_run_config

    monkeypatch.setenv("KERAS_VAE_MAX_STEPS", "3")
    out = tmp_path / "bg"
    train_background(vae_run, out, rate=0.3, epochs=1, seed=2)
    config, original = load_run_config(out), load_run_config(vae_run)
    data = np.load(tmp_path / "bg.perturbed.npz")["images"]
    assert config.data.source == f"npy:{(tmp_path / 'bg.perturbed.npz').resolve()}"
    assert config.model == original.model and config.data.binarize == original.data.binarize
    assert data.dtype == np.uint8 and data.shape[1:] == (28, 28, 1)
    from keras_vae.data import load_source
    from keras_vae.data.examples import load_examples

    clean = load_examples(load_source(original.data), image_shape=(28, 28, 1), value_range=(0.0, 1.0), split="train")
    assert len(data) == len(clean.images) == 600  # the run's training split (tiny-vae caps it at 600)
    # 30% of pixels replaced by one of 256 levels (1/256 of them by the same value); 5 binomial sds
    changed = np.mean(data != np.rint(clean.images * 255).astype(np.uint8))
    assert abs(changed - 0.3 * 255 / 256) < 5 * math.sqrt(0.3 * 0.7 / data.size)
