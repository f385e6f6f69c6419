"""latent.png's 2-D projections: PCA with explained-variance axis labels, t-SNE, raw codes for D <= 2."""
import numpy as np
import pytest

from keras_vae.errors import ConfigError
from keras_vae.evaluation.plots import project_2d


def test_pca_labels_give_each_component_its_share_of_variance():
    # columns with variances 4 and 1 (exactly, orthogonal patterns) and 6 constant columns -> 80% / 20%
    x1 = 2.0 * np.array([1, 1, -1, -1] * 25, float)
    x2 = np.array([1, -1, 1, -1] * 25, float)
    codes = np.column_stack([x2, x1, np.full((100, 6), 3.0)])
    points, title, labels = project_2d(codes, "pca")
    assert labels == ("PC 1 (80% of variance)", "PC 2 (20% of variance)")
    assert "PCA" in title
    np.testing.assert_allclose(np.abs(points[:, 0]), np.abs(x1), atol=1e-9)  # PC 1 is the variance-4 axis


@pytest.mark.slow
def test_tsne_separates_two_far_clusters():
    rng = np.random.default_rng(0)
    a = rng.normal(0.0, 0.1, size=(40, 8))
    b = rng.normal(0.0, 0.1, size=(40, 8)) + 5.0
    points, title, labels = project_2d(np.concatenate([a, b]), "tsne", seed=0)
    assert points.shape == (80, 2) and labels == ("t-SNE 1", "t-SNE 2") and "t-SNE" in title
    ca, cb = points[:40], points[40:]
    gap = np.linalg.norm(ca.mean(0) - cb.mean(0))
    spread = max(np.linalg.norm(ca - ca.mean(0), axis=1).max(), np.linalg.norm(cb - cb.mean(0), axis=1).max())
    assert gap > 2 * spread  # the clusters do not overlap in the embedding


def test_low_dimensional_codes_are_shown_as_they_are_and_bad_methods_fail():
    codes = np.arange(10, dtype=float).reshape(5, 2)
    points, _, labels = project_2d(codes, "tsne")
    np.testing.assert_array_equal(points, codes)
    assert labels == ("z_1", "z_2")
    with pytest.raises(ConfigError, match="choose 'pca' or 'tsne'"):
        project_2d(np.zeros((5, 3)), "umap")
