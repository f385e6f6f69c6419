"""Applications as library functions: interpolation, attribute vectors, PSNR, anomaly scores and
thresholds, ROC-AUC, masks and completion; each against NumPy references or closed forms."""
import itertools

import numpy as np
import pytest
import tensorflow as tf

from keras_vae.applications.anomaly import LatentGaussian, anomaly_scores, available_scores, fit_threshold, roc_auc
from keras_vae.applications.completion import (complete_all, iterative_fill, latent_fill, make_mask, map_objective,
                                               mean_fill, nearest_fill, parse_mask)
from keras_vae.applications.encoding import encode_examples, psnr, reconstruct_examples
from keras_vae.applications.latent import apply_attribute, attribute_vector, lerp, slerp
from keras_vae.errors import ConfigError


@pytest.fixture(scope="module")
def vae(vae_run):
    from keras_vae.runs.folder import load_run

    return load_run(vae_run)[1]


def _digits(n=12, seed=0):
    from keras_vae.data.embedded import load_embedded_mnist

    return load_embedded_mnist()[0][seed:seed + n, :, :, None].astype(np.float32) / 255.0


# --- latent walks --------------------------------------------------------------------------
def test_lerp_and_slerp_closed_forms():
    z0, z1 = np.array([2.0, 0.0]), np.array([0.0, 2.0])
    line = lerp(z0, z1, 5)
    np.testing.assert_allclose(line[2], [1.0, 1.0])
    arc = slerp(z0, z1, 5)
    angles = np.arctan2(arc[:, 1], arc[:, 0])
    np.testing.assert_allclose(angles, np.linspace(0, np.pi / 2, 5), atol=1e-6)  # constant angular speed
    np.testing.assert_allclose(np.linalg.norm(arc, axis=1), 2.0, rtol=1e-6)  # equal norms are kept
    for path in (line, arc):
        np.testing.assert_allclose(path[[0, -1]], [z0, z1], atol=1e-6)
    # unequal norms: the norm goes linearly; parallel codes fall back to lerp
    np.testing.assert_allclose(np.linalg.norm(slerp([1.0, 0], [0, 3.0], 3), axis=1), [1, 2, 3], rtol=1e-6)
    np.testing.assert_allclose(slerp([1.0, 1.0], [2.0, 2.0], 3), lerp([1.0, 1.0], [2.0, 2.0], 3))
    with pytest.raises(ConfigError, match="same size"):
        lerp([1, 2], [1, 2, 3])


def test_attribute_vector_is_the_difference_of_class_means():
    rng = np.random.default_rng(0)
    codes, labels = rng.normal(size=(50, 3)), rng.integers(0, 3, 50)
    v = attribute_vector(codes, labels, 2, 0)
    np.testing.assert_allclose(v, codes[labels == 2].mean(0) - codes[labels == 0].mean(0), rtol=1e-6)
    moved = apply_attribute(codes[:4], v, [0.0, 1.0])
    assert moved.shape == (4, 2, 3)
    np.testing.assert_allclose(moved[:, 1] - moved[:, 0], np.broadcast_to(v, (4, 3)), rtol=1e-6)
    with pytest.raises(ConfigError, match="no code has label 7"):
        attribute_vector(codes, labels, 7, 0)


# --- metrics -------------------------------------------------------------------------------
def test_psnr_closed_form_and_mask():
    a = np.zeros((2, 4, 4, 1))
    b = a.copy()
    b[0] += 0.1  # MSE 0.01 -> 20 dB
    b[1, :2] = 1.0  # MSE 1 on the top half, 0 elsewhere
    np.testing.assert_allclose(psnr(a, b), [20.0, 10 * np.log10(2.0)], rtol=1e-12)
    top = np.zeros((2, 4, 4, 1), bool)
    top[:, :2] = True
    np.testing.assert_allclose(psnr(a, b, top), [20.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(psnr(a, a), 100.0)  # identical images: capped


def test_roc_auc_matches_pairwise_definition_with_ties():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 6, 40).astype(float)  # many ties
    truth = rng.random(40) < 0.4
    pos, neg = scores[truth], scores[~truth]
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
    assert roc_auc(scores, truth) == pytest.approx(np.mean(pairs), abs=1e-12)
    assert roc_auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0 and roc_auc([4, 3, 2, 1], [0, 0, 1, 1]) == 0.0


@pytest.mark.parametrize("n, fpr", [(100, 0.05), (37, 0.1), (500, 0.01), (3, 0.5)])
def test_threshold_allows_at_most_the_false_positive_rate(n, fpr):
    scores = np.random.default_rng(n).normal(size=n)
    t = fit_threshold(scores, fpr)
    rate = np.mean(scores > t)
    assert rate <= fpr and rate > fpr - 1.0 / n - 1e-12  # the tightest threshold in the validation scores
    with pytest.raises(ConfigError, match=r"in \(0, 1\)"):
        fit_threshold(scores, 1.5)


def test_latent_gaussian_mahalanobis_matches_numpy():
    rng = np.random.default_rng(2)
    codes = rng.normal(size=(400, 3)) @ np.array([[2.0, 0, 0], [0.5, 1.0, 0], [0, 0.3, 0.2]])
    fit = LatentGaussian.fit(codes, ridge=0.0)
    x = rng.normal(size=(5, 3))
    diff = x - codes.mean(0)
    expected = np.sqrt(np.einsum("nd,de,ne->n", diff, np.linalg.inv(np.cov(codes, rowvar=False)), diff))
    np.testing.assert_allclose(fit.distance(x), expected, rtol=1e-10)


# --- scores and encodings of a model ---------------------------------------------------------
def test_anomaly_scores_are_the_models_quantities(vae):
    x = (_digits(6) > 0.5).astype(np.float32)
    mean, _ = vae.encode(x)
    fit = LatentGaussian.fit(np.asarray(vae.encode((_digits(40, seed=20) > 0.5).astype(np.float32))[0]))
    scores = anomaly_scores(vae, x, fit, iwae_samples=8, elbo_samples=3, seed=4)
    assert tuple(scores) == available_scores(vae) == ("neg_elbo", "iwae_nll", "reconstruction_error", "mahalanobis",
                                                      "complexity_corrected")
    np.testing.assert_allclose(scores["neg_elbo"], -vae.elbo(x, num_samples=3, seed=4), rtol=1e-6)
    np.testing.assert_allclose(scores["iwae_nll"], -vae.log_likelihood(x, num_samples=8, seed=4), rtol=1e-6)
    recon = np.asarray(vae.reconstruct(x))
    np.testing.assert_allclose(scores["reconstruction_error"], ((x - recon) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(scores["mahalanobis"], fit.distance(np.asarray(mean)), rtol=1e-6)
    with pytest.raises(ConfigError, match="not available"):
        anomaly_scores(vae, x, fit, scores=["bogus"])


def test_encode_and_reconstruct_examples_match_the_model(vae):
    from keras_vae.data.examples import ExampleBatch

    x = _digits(10)
    batches = [ExampleBatch(x[:6], np.arange(6), None, [f"f{i}" for i in range(6)]),
               ExampleBatch(x[6:], np.arange(6, 10), None, [f"f{i}" for i in range(6, 10)])]
    codes = encode_examples(vae, batches)
    mean, log_var = vae.encode(x)
    np.testing.assert_allclose(codes.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(codes.log_var, log_var, rtol=1e-5, atol=1e-6)
    assert codes.names == [f"f{i}" for i in range(10)] and codes.labels is None
    rec = reconstruct_examples(vae, batches)
    expected = np.asarray(vae.reconstruct(x))
    assert np.abs(rec["images"] / 255.0 - expected).max() <= 0.5 / 255 + 1e-6  # uint8 rounding
    np.testing.assert_allclose(rec["mse"], ((expected - x) ** 2).mean(axis=(1, 2, 3)), rtol=1e-5)


# --- completion ------------------------------------------------------------------------------
def test_masks():
    center = make_mask("center", 2, (28, 28, 1))
    assert center.shape == (2, 28, 28, 1) and center.sum() == 2 * 14 * 14 and center[0, 7:21, 7:21].all()
    left = make_mask("left", 1, (28, 28, 1))
    assert left[0, :, :14].all() and not left[0, :, 14:].any()
    rnd = make_mask("random:0.3", 200, (28, 28, 1), seed=1)
    assert abs(rnd.mean() - 0.3) < 0.01  # 156,800 Bernoulli(0.3) draws: s.d. 0.0012
    np.testing.assert_array_equal(rnd, make_mask("random:0.3", 200, (28, 28, 1), seed=1))
    for bad in ("centre", "random:1.5", "random:x", "left:2"):
        with pytest.raises(ConfigError, match="mask"):
            parse_mask(bad)


def test_baselines_against_numpy():
    rng = np.random.default_rng(3)
    ref = rng.random((30, 6, 6, 1)).astype(np.float32)
    x = ref[[4, 17]] + 0.01 * rng.random((2, 6, 6, 1)).astype(np.float32)
    mask = make_mask("random:0.5", 2, (6, 6, 1), seed=0)
    filled = nearest_fill(x, mask, ref)
    np.testing.assert_array_equal(filled[~mask[..., 0]], x[~mask[..., 0]])  # observed pixels kept
    np.testing.assert_array_equal(filled[0][mask[0]], ref[4][mask[0]])  # the right neighbour's pixels
    np.testing.assert_array_equal(filled[1][mask[1]], ref[17][mask[1]])
    mean = ref.mean(0)
    np.testing.assert_allclose(mean_fill(x, mask, mean), np.where(mask, mean[None], x))


def test_model_completions_keep_observed_pixels_and_fit_them(vae):
    x = _digits(8)
    mask = make_mask("left", 8, x.shape[1:])
    init = mean_fill(x, mask, np.full(x.shape[1:], 0.2, np.float32))
    one = iterative_fill(vae, x, mask, init, steps=1)
    np.testing.assert_allclose(one, np.where(mask, np.asarray(vae.reconstruct(init)), x), atol=1e-6)
    opt, z_star = latent_fill(vae, x, mask, one, steps=30, return_latents=True)
    np.testing.assert_array_equal(opt[~mask[..., 0]], x[~mask[..., 0]])  # observed pixels kept
    np.testing.assert_allclose(opt, np.where(mask, np.asarray(vae.decode(z_star)), x), atol=1e-6)
    z_start = np.asarray(vae.encode(one)[0])  # where the optimiser starts
    before = map_objective(vae, x, mask, tf.constant(z_start)).numpy()
    after = map_objective(vae, x, mask, tf.constant(z_star)).numpy()
    assert np.all(after < before)  # Adam lowered -log p(x_obs | z) + |z|^2 / 2 for every image
    log_p = vae.likelihood(vae.decoder(tf.constant(z_star))).distribution.log_prob(x).numpy()
    np.testing.assert_allclose(after, -(log_p * ~mask).sum(axis=(1, 2, 3)) + 0.5 * (z_star ** 2).sum(1), rtol=1e-5)
    result = complete_all(vae, x, _digits(40, seed=30), "center", steps=2, latent_steps=5)
    assert set(result.filled) == {"iterative", "latent", "mean_fill", "nearest"}
    summary = result.summary()
    per_image = result.psnr()
    for method, (mean_db, _) in summary.items():
        assert mean_db == pytest.approx(per_image[method].mean())
