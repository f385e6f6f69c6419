"""The shared pipeline, exercised through NumPy arrays: shapes, ranges, seeds, binarization, flips, errors."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.data import Datasets, make_datasets_from_arrays, parse_source
from keras_vae.errors import ConfigError, DataError


def _digits(n=40, h=8, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w), dtype=np.uint8)


def _make(images, labels=None, **kw):
    args = dict(image_shape=(8, 8, 1), value_range=(0.0, 1.0), batch_size=8, seed=0)
    args.update(kw)
    return make_datasets_from_arrays(images, labels, **args)


def _first(ds):
    return next(iter(ds)).numpy()


def test_shapes_dtypes_and_split_sizes():
    ds = _make(_digits(50), np.arange(50))
    assert isinstance(ds, Datasets)
    assert (ds.num_train, ds.num_validation, ds.image_shape) == (45, 5, (8, 8, 1))
    assert "45 train / 5 validation" in ds.description
    train = list(ds.train)
    assert [b.shape[0] for b in train] == [8] * 5 + [5]
    assert all(b.dtype == tf.float32 and b.shape[1:] == (8, 8, 1) for b in train)
    assert sum(b.shape[0] for b in ds.validation) == 5
    assert ds.train.element_spec.shape.as_list() == [None, 8, 8, 1]


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0)])
def test_value_range_and_validation_content(value_range):
    images = _digits(30)
    ds = _make(images, np.arange(30), value_range=value_range)
    lo, hi = value_range
    batch = _first(ds.train)
    assert batch.min() >= lo and batch.max() <= hi and batch.min() < lo + 0.1 and batch.max() > hi - 0.1
    x, y = ds.validation_arrays()
    assert x.dtype == np.float32 and x.shape == (3, 8, 8, 1) and y.dtype == np.int64
    expected = images[y][..., None].astype(np.float32) / 255.0 * (hi - lo) + lo
    np.testing.assert_allclose(x, expected, atol=1e-6)


def test_float_images_pass_through_and_labels_optional():
    images = np.random.default_rng(1).random((20, 8, 8, 1)).astype(np.float64)
    ds = _make(images)
    x, y = ds.validation_arrays()
    assert y is None and x.shape == (2, 8, 8, 1)
    assert any(np.allclose(x[0], im, atol=1e-6) for im in images)  # the same pixels, no quantization


def test_validation_arrays_max_examples():
    ds = _make(_digits(100), np.arange(100), batch_size=3)
    x, y = ds.validation_arrays(max_examples=4)
    assert x.shape[0] == 4 and y.shape == (4,)
    x_all, _ = ds.validation_arrays()
    np.testing.assert_array_equal(x, x_all[:4])


def test_seeds_reproducible_and_distinct():
    images = _digits(64)
    a, b, c = (_make(images, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(_first(a.train), _first(b.train))
    assert not np.array_equal(_first(a.train), _first(c.train))
    np.testing.assert_array_equal(a.validation_arrays()[0], c.validation_arrays()[0])


def test_reshuffled_each_epoch_and_each_epoch_complete():
    ds = _make(_digits(64), batch_size=64)
    e1, e2 = (np.concatenate([b.numpy() for b in ds.train]) for _ in range(2))
    assert not np.array_equal(e1, e2)
    key = lambda e: sorted(x.tobytes() for x in e)  # noqa: E731
    assert key(e1) == key(e2)  # the same examples, in another order


def test_dynamic_binarization():
    grey = np.full((200, 8, 8), 0.3, np.float32)
    grey[:, :, 4:] = 0.8
    ds = _make(grey, binarize=True, batch_size=200)
    e1, e2 = _first(ds.train), _first(ds.train)
    assert set(np.unique(e1)) <= {0.0, 1.0}
    assert abs(e1[:, :, :4].mean() - 0.3) < 0.03 and abs(e1[:, :, 4:].mean() - 0.8) < 0.03
    assert not np.array_equal(e1, e2)  # a new Bernoulli draw every epoch
    v1, v2 = ds.validation_arrays()[0], ds.validation_arrays()[0]
    assert set(np.unique(v1)) <= {0.0, 1.0}
    np.testing.assert_array_equal(v1, v2)  # binarized once, with a fixed seed
    np.testing.assert_array_equal(v1, np.concatenate([b.numpy() for b in ds.validation]))
    np.testing.assert_array_equal(v1, _make(grey, binarize=True, seed=5).validation_arrays()[0])


def test_binarize_needs_unit_range():
    with pytest.raises(ConfigError, match=r"binarize needs value_range \(0, 1\)"):
        _make(_digits(), binarize=True, value_range=(-1, 1))


def test_flip_actually_flips_train_only():
    images = _digits(32, 6, 6, seed=3)
    ds = _make(images, image_shape=(6, 6, 1), flip=True, batch_size=32)
    originals = {im.tobytes() for im in (images / 255.0).astype(np.float32)}
    flipped = {np.flip(im, axis=1).tobytes() for im in (images / 255.0).astype(np.float32)}
    counts = {"orig": 0, "flip": 0}
    for x in _first(ds.train)[..., 0]:
        if x.tobytes() in originals:
            counts["orig"] += 1
        else:
            assert x.tobytes() in flipped
            counts["flip"] += 1
    assert counts["orig"] > 0 and counts["flip"] > 0
    assert all(x.tobytes() in originals for x in ds.validation_arrays()[0][..., 0])


def test_channel_conversions_and_resize():
    rgb = np.random.default_rng(2).integers(0, 256, (10, 8, 8, 3), dtype=np.uint8)
    grey = _make(rgb, np.arange(10), image_shape=(8, 8, 1))
    x, y = grey.validation_arrays()
    ref = np.round(rgb[y].astype(np.float32) @ np.array([0.2989, 0.5870, 0.1140], np.float32)) / 255.0
    np.testing.assert_allclose(x[..., 0], ref, atol=1.01 / 255)
    to_rgb = _make(rgb[..., 0], image_shape=(8, 8, 3))
    x3 = to_rgb.validation_arrays()[0]
    assert x3.shape[-1] == 3 and np.array_equal(x3[..., 0], x3[..., 2])
    rgba = np.concatenate([rgb, np.zeros_like(rgb[..., :1])], axis=-1)
    x4, y4 = _make(rgba, np.arange(10), image_shape=(8, 8, 3)).validation_arrays()
    np.testing.assert_allclose(x4, rgb[y4] / 255.0, atol=1e-6)  # alpha dropped
    small = _make(_digits(10, 28, 28), image_shape=(16, 16, 1))
    assert _first(small.train).shape[1:] == (16, 16, 1)


@pytest.mark.parametrize(
    "images, match",
    [
        (np.full((10, 8, 8), 255.0), r"float64 with values in \[255, 255\]: expected uint8 in 0\.\.255 or float in \[0, 1\] \(divide by 255\)"),
        (np.full((10, 8, 8), -0.5), r"values in \[-0\.5, -0\.5\]"),
        (np.full((10, 8, 8), np.nan), r"NaN or Inf"),
        (np.full((10, 8, 8), np.inf, np.float32), r"NaN or Inf"),
        (np.zeros((10, 8, 8), np.int64), r"int64 .*astype\('uint8'\)"),
        (np.zeros((10, 8, 8, 2), np.uint8), r"shape \(10, 8, 8, 2\): expected \(N, H, W\) or \(N, H, W, C\)"),
        (np.zeros((10, 64), np.uint8), r"shape \(10, 64\)"),
        (np.zeros((1, 8, 8), np.uint8), r"found 1 images: need at least 2"),
        (np.array([["a"]] * 4), r"shape|dtype"),
    ],
)
def test_bad_arrays_raise_data_error(images, match):
    with pytest.raises(DataError, match=match):
        _make(images)


def test_bad_labels_and_requests():
    with pytest.raises(DataError, match=r"labels have shape \(3,\).*expected 10 integers"):
        _make(_digits(10), np.arange(3))
    with pytest.raises(ConfigError, match=r"2 channels: choose 1 \(greyscale\) or 3 \(RGB\)"):
        _make(_digits(10), image_shape=(8, 8, 2))
    with pytest.raises(ConfigError, match="batch_size"):
        _make(_digits(10), batch_size=0)
    with pytest.raises(ConfigError, match="validation_fraction"):
        _make(_digits(10), validation_fraction=1.0)


@pytest.mark.parametrize(
    "spec, expected",
    [("embedded", ("embedded", None)), ("tfds:mnist", ("tfds", "mnist")), ("folder:/a/b:c", ("folder", "/a/b:c"))],
)
def test_parse_source(spec, expected):
    assert parse_source(spec) == expected


@pytest.mark.parametrize("spec", ["", "mnist", "tfds:", "folder:", "embedded:x", "http://x"])
def test_parse_source_errors(spec):
    with pytest.raises(ConfigError, match="data source"):
        parse_source(spec)


class TinyAE(keras.Model):
    """A custom train_step that receives image batches only (the contract of Datasets)."""

    def __init__(self):
        super().__init__()
        self.net = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(4), keras.layers.Dense(64),
                                     keras.layers.Reshape((8, 8, 1))])
        self.tracker = keras.metrics.Mean(name="loss")

    def call(self, x):
        return self.net(x)

    @property
    def metrics(self):
        return [self.tracker]

    def _loss(self, x):
        assert not isinstance(x, tuple)
        return tf.reduce_mean(tf.square(self(x) - x))

    def train_step(self, x):
        with tf.GradientTape() as tape:
            loss = self._loss(x)
        grads = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(grads, self.trainable_variables)
        self.tracker.update_state(loss)
        return {"loss": self.tracker.result()}

    def test_step(self, x):
        self.tracker.update_state(self._loss(x))
        return {"loss": self.tracker.result()}


def test_model_fit_with_custom_train_step():
    ds = _make(_digits(40), value_range=(-1, 1), flip=True)
    model = TinyAE()
    model(_first(ds.validation))
    model.compile(optimizer="adam")
    history = model.fit(ds.train, validation_data=ds.validation, epochs=2, shuffle=False, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["val_loss"]).all()
