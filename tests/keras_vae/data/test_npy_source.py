"""The npy:PATH source, data.exclude_labels, and iterate_examples (positions, names, binarization)."""
import numpy as np
import pytest

from keras_vae.config import RunConfig, merge
from keras_vae.data import DataConfig, load_source, make_datasets, parse_source
from keras_vae.data.examples import count_examples, iterate_examples, load_examples, with_source
from keras_vae.data.pipeline import split_indices
from keras_vae.errors import ConfigError, DataError


def _images(n=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 8, 8), dtype=np.uint8)


def _config(path, **kw):
    return DataConfig(source=f"npy:{path}", **kw)


def _examples(config, split="all", **kw):
    return load_examples(load_source(config), image_shape=(8, 8, 1), value_range=(0.0, 1.0), split=split, **kw)


def test_parse_and_config_accept_npy():
    assert parse_source("npy:a/b.npz") == ("npy", "a/b.npz")
    with pytest.raises(ConfigError, match="needs a name or path after ':'"):
        DataConfig(source="npy:")
    with pytest.raises(ConfigError, match="'npy:PATH'"):
        DataConfig(source="csv:x")


def test_npz_round_trip_with_labels_and_names(tmp_path):
    images, labels = _images(), np.arange(30) % 3
    names = np.array([f"img{i:02d}.png" for i in range(30)])
    np.savez(tmp_path / "d.npz", images=images, labels=labels, names=names)
    ex = _examples(_config(tmp_path / "d.npz"))
    order = np.argsort(ex.index)
    np.testing.assert_array_equal(ex.index[order], np.arange(30))  # every example once
    np.testing.assert_allclose(ex.images[order][..., 0], images / 255.0, atol=1e-7)
    np.testing.assert_array_equal(ex.labels[order], labels)
    assert [ex.names[i] for i in order] == list(names)
    # the validation split is the fixed split of every source
    _, val_idx = split_indices(30, 0.1)
    val = _examples(_config(tmp_path / "d.npz"), split="validation")
    np.testing.assert_array_equal(val.index, val_idx)
    assert count_examples(load_source(_config(tmp_path / "d.npz")), "train") == 27


def test_npy_file_without_labels_trains_through_make_datasets(tmp_path):
    np.save(tmp_path / "x.npy", _images().astype(np.float32) / 255.0)
    data = make_datasets(_config(tmp_path / "x.npy"), image_shape=(8, 8, 1), value_range=(-1.0, 1.0),
                         batch_size=4, seed=0)
    assert (data.num_train, data.num_validation) == (27, 3)
    batch = next(iter(data.train)).numpy()
    assert batch.shape == (4, 8, 8, 1) and batch.min() >= -1.0 and batch.max() <= 1.0
    assert data.validation_arrays()[1] is None


@pytest.mark.parametrize("make, message", [
    (lambda p: None, "does not exist"),
    (lambda p: np.save(p, np.zeros((4, 8), np.uint8)), "expected (N, H, W) or (N, H, W, C)"),
    (lambda p: np.save(p, np.full((4, 8, 8), np.nan, np.float32)), "NaN or Inf"),
    (lambda p: np.save(p, np.full((4, 8, 8), 3.0, np.float32)), "float32 with values in [3, 3]"),
    (lambda p: np.save(p, np.zeros((4, 8, 8), "complex64")), "dtype complex64"),
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object)), "pickled"),
    (lambda p: p.write_bytes(b"not numpy"), "cannot read"),
])
def test_bad_npy_files_are_one_line_errors(tmp_path, make, message):
    path = tmp_path / "bad.npy"
    make(path)
    with pytest.raises(DataError) as err:
        load_source(_config(path))
    assert message in str(err.value) and str(path) in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("arrays, message", [
    ({"x": _images()}, "has no array named 'images' (it holds x)"),
    ({"images": _images(), "labels": np.arange(29)}, "expected 30 integers"),
    ({"images": _images(), "labels": np.zeros(30, np.float32)}, "expected 30 integers"),
    ({"images": _images(), "names": np.arange(30)}, "expected 30 strings"),
    ({"images": _images(), "extra": np.arange(30)}, "unexpected arrays extra"),
])
def test_bad_npz_contents(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match="d.npz") as err:
        load_source(_config(tmp_path / "d.npz"))
    assert message in str(err.value)


def test_exclude_labels_drops_classes_and_keeps_the_rest_of_the_split(tmp_path):
    images, labels = _images(60), np.arange(60) % 4
    np.savez(tmp_path / "d.npz", images=images, labels=labels)
    full = _examples(_config(tmp_path / "d.npz"), split="validation")
    held = _examples(_config(tmp_path / "d.npz", exclude_labels=(1, 3)), split="validation")
    assert set(held.labels) <= {0, 2} and set(full.labels) - {0, 2}
    np.testing.assert_array_equal(held.index, full.index[np.isin(full.labels, [0, 2])])
    train = _examples(_config(tmp_path / "d.npz", exclude_labels=(1, 3)), split="train")
    assert len(train.index) + len(held.index) == 30 and not np.isin(train.labels, [1, 3]).any()


def test_exclude_labels_validation_and_unlabelled_sources(tmp_path):
    with pytest.raises(ConfigError, match="non-negative integers"):
        DataConfig(exclude_labels=(-1,))
    with pytest.raises(ConfigError, match="repeated"):
        DataConfig(exclude_labels=(2, 2))
    config = merge(RunConfig(), {"data": {"exclude_labels": "1, 7"}})  # as --set data.exclude_labels=1,7 gives it
    assert config.data.exclude_labels == (1, 7)
    np.save(tmp_path / "x.npy", _images())
    with pytest.raises(DataError, match="needs labels"):
        load_source(_config(tmp_path / "x.npy", exclude_labels=(1,)))


def test_embedded_exclusion_and_with_source():
    config = DataConfig(exclude_labels=(3,), max_examples=200)
    source = load_source(config)
    assert source.has_labels
    ex = load_examples(source, image_shape=(28, 28, 1), value_range=(0.0, 1.0), split="validation")
    assert len(ex.labels) > 0 and 3 not in set(ex.labels)
    scored = with_source(config)  # the applications score every class of the run's source
    assert scored.exclude_labels == () and scored.max_examples == 200
    assert with_source(config, "npy:x.npz").max_examples is None


def test_binarized_examples_are_fixed_by_position(tmp_path):
    np.save(tmp_path / "x.npy", _images())
    source = load_source(_config(tmp_path / "x.npy"))
    kw = dict(image_shape=(8, 8, 1), value_range=(0.0, 1.0), binarize=True)
    a = load_examples(source, split="all", batch_size=7, **kw)
    b = load_examples(source, split="validation", batch_size=2, **kw)
    assert set(np.unique(a.images)) <= {0.0, 1.0}
    pos = {int(i): k for k, i in enumerate(a.index)}
    np.testing.assert_array_equal(b.images, a.images[[pos[int(i)] for i in b.index]])
    first = next(iterate_examples(source, split="all", batch_size=5, max_examples=3, **kw))
    assert first.images.shape == (3, 8, 8, 1) and first.names is None
