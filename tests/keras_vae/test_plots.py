"""Figures of a run with the smallest validation split (one image) and the 2-D projection."""
import numpy as np
import pytest
from PIL import Image

from keras_vae.models import build_model
from keras_vae.evaluation.plots import plot_interpolations, plot_latent, plot_reconstructions, plot_traversals, project_2d
from keras_vae.config.presets import get_preset


def test_project_2d_pads_when_there_are_fewer_codes_than_components():
    codes = np.random.default_rng(0).standard_normal((5, 4))
    points, how, _ = project_2d(codes)
    centred = codes - codes.mean(0)
    assert points.shape == (5, 2) and how.startswith("PCA")
    np.testing.assert_allclose(np.sum(points**2), np.sum(np.linalg.svd(centred, compute_uv=False)[:2] ** 2))
    one, _, _ = project_2d(codes[:1])
    np.testing.assert_array_equal(one, np.zeros((1, 2)))  # one code: it is the mean, at the origin


@pytest.mark.parametrize("labels", [None, np.array([3])])
def test_every_figure_works_with_one_validation_image(tmp_path, labels):
    """A folder of 2-14 images or max_examples=1 leaves one validation image; plots used to crash."""
    model = build_model(get_preset("tiny-vae"))
    image = (np.random.default_rng(0).uniform(size=(1, 28, 28, 1)) > 0.5).astype(np.float32)
    for plot, kwargs in ((plot_latent, {"labels": labels}), (plot_interpolations, {}),
                         (plot_reconstructions, {}), (plot_traversals, {})):
        path = plot(model, image, path=tmp_path / f"{plot.__name__}.png", **kwargs)
        with Image.open(path) as png:
            assert png.format == "PNG" and min(png.size) > 50
