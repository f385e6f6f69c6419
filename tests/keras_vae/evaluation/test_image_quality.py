"""Reconstruction metrics (tf.image) against closed forms on small arrays."""
import numpy as np
import pytest

from keras_vae.evaluation.image_quality import MS_SSIM_MIN_SIDE, per_image_quality, psnr_from_mse

C1, C2 = 0.01**2, 0.03**2
SSIM_WINDOW = 11 * 11
FLOAT32_TOL = SSIM_WINDOW * float(np.finfo(np.float32).eps)  # a float32 sum over an 11x11 window of values <= 1


def test_mse_mae_psnr_of_a_constant_offset():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 0.8, size=(3, 16, 16, 1)).astype(np.float32)
    delta = 0.125  # exact in binary
    q = per_image_quality(x, x + delta)
    np.testing.assert_allclose(q["mse"], delta**2, rtol=1e-6)
    np.testing.assert_allclose(q["mae"], delta, rtol=1e-6)
    np.testing.assert_allclose(q["psnr"], 10 * np.log10(1 / delta**2), rtol=1e-6)  # 18.06 dB
    assert psnr_from_mse(0.0) == np.inf


def test_ssim_of_constant_images_is_the_luminance_term():
    # for constant images a and b the variances and covariance vanish: SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b = 0.2, 0.7
    x = np.full((2, 16, 16, 1), a, np.float32)
    y = np.full((2, 16, 16, 1), b, np.float32)
    expected = (2 * a * b + C1) / (a**2 + b**2 + C1)
    # tf.image.ssim forms the variances as E[x^2] - E[x]^2 over an 11x11 window in float32: a cancellation
    # whose round-off, up to 121 * eps32 * (a^2 + b^2), is divided by C2 in the contrast-structure term.
    tolerance = SSIM_WINDOW * np.finfo(np.float32).eps * (a**2 + b**2) / C2
    np.testing.assert_allclose(per_image_quality(x, y)["ssim"], expected, rtol=tolerance)


def test_ssim_of_identical_images_is_one_and_lower_for_noise():
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(2, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(per_image_quality(x, x)["ssim"], 1.0, atol=FLOAT32_TOL)
    noisy = np.clip(x + rng.normal(0, 0.2, x.shape), 0, 1).astype(np.float32)
    assert np.all(per_image_quality(x, noisy)["ssim"] < 0.9)
    assert "ms_ssim" not in per_image_quality(x, x)  # 28 < 176: too small for 5 scales


def test_ms_ssim_where_the_size_allows():
    rng = np.random.default_rng(2)
    x = rng.uniform(size=(1, MS_SSIM_MIN_SIDE, MS_SSIM_MIN_SIDE, 1)).astype(np.float32)
    q = per_image_quality(x, x)
    np.testing.assert_allclose(q["ms_ssim"], 1.0, atol=FLOAT32_TOL)
    blurred = (x + np.roll(x, 1, axis=1) + np.roll(x, 1, axis=2)) / 3
    assert per_image_quality(x, blurred)["ms_ssim"][0] < 1.0 - 1e-3


def test_mismatched_shapes_are_an_error():
    with pytest.raises(ValueError, match="same shape"):
        per_image_quality(np.zeros((1, 8, 8, 1)), np.zeros((1, 8, 9, 1)))
