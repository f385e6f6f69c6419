"""Sample-quality metrics on feature vectors (NumPy only): Frechet distance, KID, precision/recall, sharpness.

Features are [N, F] arrays (``keras_vae.evaluation.features.embed``); images for sharpness are
[N, H, W, C] in [0, 1]. With the in-house feature network these are NOT Inception FID/KID values:
compare models only on the same data and feature network.
"""
from __future__ import annotations

import numpy as np

KID_DEGREE = 3


def _check_features(name: str, features: np.ndarray, min_rows: int = 2) -> np.ndarray:
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or len(features) < min_rows:
        raise ValueError(f"{name} must be an [N, F] array with N >= {min_rows}, got shape {features.shape}")
    return features


def _sqrtm_psd(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance_from_moments(mean_a, cov_a, mean_b, cov_b) -> float:
    """Squared Frechet (2-Wasserstein) distance between N(mean_a, cov_a) and N(mean_b, cov_b):

        |mean_a - mean_b|^2 + tr(cov_a + cov_b - 2 (cov_a^1/2 cov_b cov_a^1/2)^1/2)

    (the trace term equals tr(cov_a + cov_b - 2 (cov_a cov_b)^1/2) of Heusel et al. 2017, computed with
    symmetric matrices only, so it stays real and stable).
    """
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.atleast_2d(cov_a).astype(np.float64), np.atleast_2d(cov_b).astype(np.float64)
    root_a = _sqrtm_psd(cov_a)
    cross = _sqrtm_psd(root_a @ cov_b @ root_a)
    value = float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(cross))
    return max(value, 0.0)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted (sample mean, unbiased covariance) to two feature sets."""
    a, b = _check_features("features_a", features_a), _check_features("features_b", features_b)
    return frechet_distance_from_moments(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))


def polynomial_kernel(a: np.ndarray, b: np.ndarray, degree: int = KID_DEGREE) -> np.ndarray:
    """k(x, y) = (x . y / F + 1)^degree, the kernel of KID (Binkowski et al. 2018); [len(a), len(b)]."""
    return (a @ b.T / a.shape[1] + 1.0) ** degree


def mmd2_unbiased(a: np.ndarray, b: np.ndarray, degree: int = KID_DEGREE) -> float:
    """Unbiased estimate of MMD^2 = E k(a, a') + E k(b, b') - 2 E k(a, b) with the polynomial kernel
    (diagonal terms k(x, x) excluded from the within-set means)."""
    m, n = len(a), len(b)
    k_aa, k_bb, k_ab = polynomial_kernel(a, a, degree), polynomial_kernel(b, b, degree), polynomial_kernel(a, b, degree)
    within_a = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
    within_b = (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
    return float(within_a + within_b - 2.0 * k_ab.mean())


def kernel_distance(features_a: np.ndarray, features_b: np.ndarray, subsets: int = 10, subset_size: int = 200,
                    seed: int = 0) -> tuple[float, float]:
    """KID: mean and standard deviation of ``mmd2_unbiased`` over ``subsets`` random subsets of
    min(subset_size, N_a, N_b) rows drawn without replacement from each set. Unbiased: ~0 for equal distributions."""
    a, b = _check_features("features_a", features_a), _check_features("features_b", features_b)
    size = min(subset_size, len(a), len(b))
    rng = np.random.default_rng(seed)
    values = [mmd2_unbiased(a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)])
              for _ in range(subsets)]
    return float(np.mean(values)), float(np.std(values))


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """L2 distances [len(a), len(b)] between the rows of a and b, from |a|^2 + |b|^2 - 2 a.b (clipped at 0)."""
    squared = (a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.clip(squared, 0.0, None))


def knn_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance of each row to its k-th nearest other row (the radius of its k-NN ball)."""
    distances = pairwise_distances(features, features)
    return np.sort(distances, axis=1)[:, k]  # column 0 is the row itself (distance 0)


def manifold_coverage(reference: np.ndarray, queries: np.ndarray, k: int) -> float:
    """Fraction of queries inside the union of the reference rows' k-NN balls (Kynkaanniemi et al. 2019)."""
    radii = knn_radii(reference, k)
    inside = pairwise_distances(queries, reference) <= radii[None, :]
    return float(np.mean(inside.any(axis=1)))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019): precision = fraction of fake samples on the
    real manifold (union of real k-NN balls); recall = fraction of real samples on the fake manifold."""
    real, fake = _check_features("real", real, k + 1), _check_features("fake", fake, k + 1)
    return manifold_coverage(real, fake, k), manifold_coverage(fake, real, k)


def high_frequency_energy(images: np.ndarray) -> float:
    """Mean squared discrete Laplacian (4-neighbour, interior pixels) of images [N, H, W, C] in [0, 1]:
    0 for constant images, larger for sharper ones."""
    x = np.asarray(images, np.float64)
    lap = (x[:, 1:-1, 1:-1] * 4 - x[:, :-2, 1:-1] - x[:, 2:, 1:-1] - x[:, 1:-1, :-2] - x[:, 1:-1, 2:])
    return float(np.mean(lap**2))


def sharpness_ratio(images: np.ndarray, real_images: np.ndarray) -> float:
    """High-frequency energy of ``images`` relative to real images (1.0 = as sharp as the data; blur < 1)."""
    real = high_frequency_energy(real_images)
    return high_frequency_energy(images) / real if real > 0 else float("nan")
