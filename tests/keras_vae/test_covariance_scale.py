"""The mixture's covariance scale: ``widened`` mixtures, the scale chosen on held-out training images, and
when training skips it."""
import json

import numpy as np
import pytest

from keras_vae.errors import ConfigError
from keras_vae.sampling.samplers import LatentSampler, draw_noise, fit_gmm, prior_sampler, widened
from keras_vae.training.after_fit import choose_covariance_scale


def _mixture():
    rng = np.random.default_rng(0)
    tril = np.stack([np.linalg.cholesky(a @ a.T + np.eye(3)) for a in rng.normal(size=(2, 3, 3))])
    return LatentSampler("gmm", np.array([0.3, 0.7]), rng.normal(size=(2, 3)), tril)


def test_widened_mixture_draws_what_the_temperature_draws_and_scales_covariances():
    mixture = _mixture()
    wide = widened(mixture, 1.2)
    assert wide.kind == "gmm" and np.array_equal(wide.means, mixture.means)
    assert np.array_equal(wide.weights, mixture.weights)
    np.testing.assert_allclose(wide.covariances, 1.44 * mixture.covariances, rtol=1e-12)
    eps, u = draw_noise(5, 64, 3)
    # float32 drawing rule: the products differ by the rounding of 1.2 * L in float64 before the cast
    np.testing.assert_allclose(wide.latents(eps, u), mixture.latents(eps * 1.2, u), rtol=1e-5, atol=1e-5)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match="covariance scale"):
            widened(mixture, bad)


class _LinearDecoder:
    """A stand-in for a model: z [n, 2] -> clip(a + z0 b + z1 c) on 28x28 digits (value range [0, 1])."""

    value_range = (0.0, 1.0)

    def __init__(self, digits):
        self.a = digits[:50].mean(0)
        self.b = (digits[:25].mean(0) - digits[25:50].mean(0))
        self.c = (digits[50:75].mean(0) - digits[75:100].mean(0))

    def decode(self, z):
        z = np.asarray(z, np.float32)
        return np.clip(self.a + z[:, 0, None, None, None] * self.b + z[:, 1, None, None, None] * self.c, 0, 1)

    def to_unit(self, images):
        return images


@pytest.fixture(scope="module")
def shipped_features():
    from keras_vae.evaluation.features import mnist_feature_net

    return mnist_feature_net()[0]


def test_scale_is_chosen_by_fd_against_held_out_images_and_a_well_fitted_mixture_needs_little(shipped_features):
    from keras_vae.data.embedded import load_embedded_mnist

    digits = load_embedded_mnist()[0][:100].astype(np.float32)[..., None] / 255.0
    decoder = _LinearDecoder(digits)
    rng = np.random.default_rng(1)
    codes = rng.normal(size=(1200, 2))  # one Gaussian: a 1-component mixture fits it
    variances = np.full_like(codes, 1e-4)
    held_out = rng.normal(size=(200, 2))
    mixture = fit_gmm(codes, variances, held_out, components=(1,), shrinkage=(0.0,))
    reference = decoder.decode(codes[:400])
    kwargs = dict(scales=(0.6, 1.0, 1.6), samples=300, draws=1, seed=3)
    result = choose_covariance_scale(decoder, mixture, codes, variances, reference, held_out, shipped_features,
                                     **kwargs)
    scores = result["scores"]
    assert set(scores) == {"0.6", "1", "1.6"} and result["reference_examples"] == 400
    assert result["scale"] == 1.0 and scores["1"] < min(scores["0.6"], scores["1.6"])  # the codes' own spread
    again = choose_covariance_scale(decoder, mixture, codes, variances, reference, held_out, shipped_features, **kwargs)
    assert again == result  # seeded: the same fit, draws and choice
    with pytest.raises(ValueError, match="twice as many training codes"):
        choose_covariance_scale(decoder, mixture, codes[:700], variances[:700], reference, held_out,
                                shipped_features, **kwargs)


def test_training_records_why_the_binarized_classic_run_keeps_its_mixture_as_fitted(trained_vae_run):
    metrics = json.loads((trained_vae_run / "metrics.json").read_text())
    assert metrics["final"]["sampler"]["gmm_covariance_scale"] == {"scale": 1.0,
                                                                   "skipped": "binarized training images"}


def test_only_mixtures_are_widened():
    class Subclass(LatentSampler):  # the flow sampler is one: its couplings would not follow the scale
        pass

    mixture = _mixture()
    with pytest.raises(ConfigError, match="only a Gaussian mixture"):
        widened(Subclass(mixture.kind, mixture.weights, mixture.means, mixture.scale_tril), 1.1)
    assert widened(prior_sampler(2), 2.0).covariances[0, 0, 0] == pytest.approx(4.0)
