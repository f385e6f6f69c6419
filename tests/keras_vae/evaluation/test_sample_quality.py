"""Sample-quality metrics against closed forms and NumPy/SciPy references on synthetic data."""
import numpy as np
import pytest
import scipy.linalg

from keras_vae.evaluation.sample_quality import (frechet_distance, frechet_distance_from_moments, kernel_distance,
                                                 high_frequency_energy, mmd2_unbiased, precision_recall,
                                                 sharpness_ratio)


def _random_covariance(rng, dim):
    a = rng.normal(size=(dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def test_frechet_distance_of_two_gaussians_matches_scipy_closed_form():
    rng = np.random.default_rng(0)
    m1, m2 = rng.normal(size=6), rng.normal(size=6)
    c1, c2 = _random_covariance(rng, 6), _random_covariance(rng, 6)
    reference = np.sum((m1 - m2) ** 2) + np.trace(c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real)
    assert frechet_distance_from_moments(m1, c1, m2, c2) == pytest.approx(reference, rel=1e-9, abs=1e-9)


def test_frechet_distance_one_dimensional_closed_form():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance_from_moments([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx(9.0 + 1.0)


def test_frechet_distance_of_samples_uses_their_mean_and_unbiased_covariance():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(200, 4)), rng.normal(1.0, 2.0, size=(300, 4))
    expected = frechet_distance_from_moments(a.mean(0), np.cov(a.T), b.mean(0), np.cov(b.T))
    assert frechet_distance(a, b) == pytest.approx(expected)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_mmd_matches_a_naive_double_loop():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(7, 3)), rng.normal(0.5, 1.0, size=(5, 3))

    def k(x, y):
        return (x @ y / 3 + 1) ** 3

    within_a = sum(k(a[i], a[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    within_b = sum(k(b[i], b[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    cross = sum(k(x, y) for x in a for y in b) / (7 * 5)
    assert mmd2_unbiased(a, b) == pytest.approx(within_a + within_b - 2 * cross, rel=1e-10)


def test_kid_is_unbiased_near_zero_for_equal_distributions_and_positive_otherwise():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))
    same_mean, same_std = kernel_distance(a, b, subsets=20, subset_size=200, seed=0)
    shifted_mean, shifted_std = kernel_distance(a, b + 1.0, subsets=20, subset_size=200, seed=0)
    assert abs(same_mean) < 4 * same_std + 1e-12  # zero within the spread of the subset estimates
    assert shifted_mean > 10 * max(same_std, shifted_std)


def test_precision_recall_extremes():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(100, 2))
    assert precision_recall(a, a, k=3) == (1.0, 1.0)  # every point lies in its own ball
    assert precision_recall(a, a + 100.0, k=3) == (0.0, 0.0)  # disjoint clouds


def test_precision_recall_of_gaussian_clouds_with_known_overlap():
    # real = clusters A and B (equal weights), fake = B and C, far apart (50 sigma): half the fake samples lie on
    # the real manifold and half the real ones on the fake manifold. The k-NN estimate of a cloud's own support
    # misses some tail points, so the reference is the coverage measured between two draws of cluster B alone.
    rng = np.random.default_rng(5)
    n, centre_a, centre_c = 600, np.array([50.0, 0.0]), np.array([0.0, 50.0])
    real = np.concatenate([rng.normal(size=(n, 2)) + centre_a, rng.normal(size=(n, 2))])
    fake = np.concatenate([rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + centre_c])
    b_only_p, b_only_r = precision_recall(rng.normal(size=(n, 2)), rng.normal(size=(n, 2)), k=3)
    precision, recall = precision_recall(real, fake, k=3)
    # binomial standard error of a fraction of 2n points, for both estimates
    tolerance = 4 * np.sqrt(0.25 / (2 * n)) + 4 * np.sqrt(0.25 / n)
    assert b_only_p > 0.9 and b_only_r > 0.9
    assert precision == pytest.approx(0.5 * b_only_p, abs=tolerance)
    assert recall == pytest.approx(0.5 * b_only_r, abs=tolerance)


def test_sharpness_closed_forms():
    flat = np.full((2, 8, 8, 1), 0.5)  # exact in binary: the Laplacian is exactly 0
    assert high_frequency_energy(flat) == 0.0
    checker = (np.indices((8, 8)).sum(0) % 2).astype(float)[None, :, :, None]
    # on a checkerboard every interior Laplacian is +-4 (4 * x minus four opposite neighbours)
    assert high_frequency_energy(checker) == pytest.approx(16.0)
    assert sharpness_ratio(0.5 * checker, checker) == pytest.approx(0.25)
