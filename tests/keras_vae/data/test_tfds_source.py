"""The tensorflow-datasets source, offline: mocked data for mnist and celeb_a, and the not-prepared error."""
import socket
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from keras_vae.data import DataConfig, make_datasets, tfds_source
from keras_vae.errors import DataError


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test at once."""

    def refuse(*args, **kwargs):
        raise AssertionError("the tfds source tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def prepared(monkeypatch):
    """Pretend the dataset is prepared with these splits (mock_data does not fake `is_prepared`)."""

    def use(splits):
        monkeypatch.setattr(tfds_source, "available_splits", lambda builder: list(splits))

    return use


def _make(source, tmp_path, shape, value_range=(0.0, 1.0), batch_size=4, **config):
    return make_datasets(DataConfig(source=source, data_dir=str(tmp_path), **config), image_shape=shape,
                         value_range=value_range, batch_size=batch_size, seed=0)


def test_mnist_mock_uses_test_split_for_validation(tmp_path, prepared):
    prepared(["train", "test"])
    with tfds.testing.mock_data(num_examples=10):
        ds = _make("tfds:mnist", tmp_path, (28, 28, 1), binarize=True)
        assert (ds.num_train, ds.num_validation) == (10, 10)
        assert ds.description == "tensorflow-datasets 'mnist' (train / test): 10 train / 10 validation"
        batches = [b.numpy() for b in ds.train]
        assert [b.shape for b in batches] == [(4, 28, 28, 1), (4, 28, 28, 1), (2, 28, 28, 1)]
        assert set(np.unique(np.concatenate(batches))) <= {0.0, 1.0}
        x, y = ds.validation_arrays()
        assert x.shape == (10, 28, 28, 1) and y.shape == (10,) and y.dtype == np.int64
        assert ((0 <= y) & (y < 10)).all()
        capped = _make("tfds:mnist", tmp_path, (16, 16, 3), max_examples=3)
        assert (capped.num_train, capped.num_validation) == (3, 3)
        assert next(iter(capped.train)).shape == (3, 16, 16, 3)


def test_celeb_a_mock_center_crop_and_range(tmp_path, prepared):
    prepared(["train", "validation", "test"])
    with tfds.testing.mock_data(num_examples=6):
        ds = _make("tfds:celeb_a", tmp_path, (32, 32, 3), value_range=(-1.0, 1.0), flip=True)
        assert "(train / validation)" in ds.description and (ds.num_train, ds.num_validation) == (6, 6)
        batch = next(iter(ds.train)).numpy()
        assert batch.shape == (4, 32, 32, 3) and batch.min() >= -1.0 and batch.max() <= 1.0
        x, y = ds.validation_arrays(max_examples=1)
        assert y is None  # celeb_a has attributes, no class label
        raw = next(iter(tfds.builder("celeb_a", data_dir=str(tmp_path)).as_dataset(split="validation")))["image"]
    raw = raw.numpy()
    assert raw.shape == (218, 178, 3)
    square = Image.fromarray(raw[20:198])  # the central 178x178
    ref = np.asarray(square.resize((32, 32), Image.BILINEAR), np.float32) / 127.5 - 1.0
    assert np.abs(x[0] - ref).max() <= 3.0 / 127.5


def test_not_prepared_fails_fast_without_download(tmp_path):
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        _make("tfds:celeb_a", tmp_path, (64, 64, 3))
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert f"tensorflow-datasets 'celeb_a' is not prepared under {tmp_path}" in message
    assert f"tfds.builder('celeb_a', data_dir='{tmp_path}').download_and_prepare()" in message
    assert "--data-dir" in message and "\n" not in message


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(DataError, match=r"unknown tensorflow-datasets name 'no_such_dataset_xyz'.*list_builders"):
        _make("tfds:no_such_dataset_xyz", tmp_path, (28, 28, 1))


def test_dataset_without_validation_or_test_split(tmp_path, prepared):
    prepared(["train"])
    with pytest.raises(DataError, match=r"no 'validation' or 'test' split"):
        _make("tfds:mnist", tmp_path, (28, 28, 1))


def test_mnist_mock_exclude_labels_filters_and_recounts(tmp_path, prepared):
    prepared(["train", "test"])
    with tfds.testing.mock_data(num_examples=30):
        full = _make("tfds:mnist", tmp_path, (28, 28, 1))
        _, labels = full.validation_arrays()
        drop = int(labels[0])
        held = _make("tfds:mnist", tmp_path, (28, 28, 1), exclude_labels=(drop,))
        _, kept = held.validation_arrays()
        assert drop not in set(kept.tolist())
        assert held.num_validation == len(kept) == int((labels != drop).sum())
        assert held.num_train == sum(len(b) for b in held.train)  # the recount matches what is served
