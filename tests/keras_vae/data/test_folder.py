"""The folder source: recursive discovery, center-crop + resize against PIL, channels, bad files."""
import numpy as np
import pytest
from PIL import Image, ImageFilter

from keras_vae.data import DataConfig, make_datasets
from keras_vae.data.folder import find_images
from keras_vae.errors import DataError


def _photo(h, w, seed=0, mode="RGB"):
    """A smooth random image (so that resampling filters agree to about one grey level)."""
    noise = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(noise).filter(ImageFilter.GaussianBlur(3)).convert(mode)


def _make(path, shape=(16, 16, 3), value_range=(0.0, 1.0), **config):
    return make_datasets(DataConfig(source=f"folder:{path}", **config), image_shape=shape,
                         value_range=value_range, batch_size=4, seed=0)


@pytest.fixture
def tree(tmp_path):
    _photo(40, 60, 1).save(tmp_path / "a.png")
    _photo(50, 30, 2).save(tmp_path / "b.JPG", quality=95)
    _photo(20, 20, 3, "L").save(tmp_path / "c.png")
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    _photo(33, 33, 4).save(tmp_path / "sub" / "d.bmp")
    _photo(24, 48, 5).save(tmp_path / "sub" / "deeper" / "e.gif")
    _photo(64, 64, 6, "RGBA").save(tmp_path / "sub" / "deeper" / "f.png")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_recursive_discovery(tree):
    found = [p[len(str(tree)) + 1:] for p in find_images(str(tree))]
    assert found == sorted(["a.png", "b.JPG", "c.png", "sub/d.bmp", "sub/deeper/e.gif", "sub/deeper/f.png"])


@pytest.mark.parametrize("shape, value_range", [((16, 16, 3), (0.0, 1.0)), ((12, 20, 1), (-1.0, 1.0))])
def test_batches_from_mixed_sizes_formats_and_modes(tree, shape, value_range):
    ds = _make(tree, shape, value_range, validation_fraction=0.34)
    assert (ds.num_train, ds.num_validation) == (4, 2)
    assert ds.description.startswith(f"image folder {tree}: 4 train / 2 validation")
    batches = [b.numpy() for b in ds.train]
    assert [b.shape for b in batches] == [(4, *shape)]
    assert batches[0].dtype == np.float32
    assert batches[0].min() >= value_range[0] and batches[0].max() <= value_range[1]
    x, y = ds.validation_arrays()
    assert x.shape == (2, *shape) and y is None


def _reference(image, height, width):
    """Center crop to height:width, then PIL bilinear resize: the expected model input in [0, 1]."""
    w, h = image.size
    crop_h, crop_w = min(h, round(w * height / width)), min(w, round(h * width / height))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    crop = image.crop((left, top, left + crop_w, top + crop_h))
    return np.asarray(crop.resize((width, height), Image.BILINEAR), np.float32) / 255.0


@pytest.mark.parametrize("shape", [(16, 16, 3), (12, 24, 3), (30, 10, 3), (16, 16, 1)])
def test_center_crop_and_resize_match_pil(tmp_path, shape):
    image = _photo(40, 60, 7)
    for name in ("x.png", "y.png"):  # two copies: one lands in train, one in validation
        image.save(tmp_path / name)
    x, _ = _make(tmp_path, shape).validation_arrays()
    ref = _reference(image if shape[2] == 3 else image.convert("L"), *shape[:2])
    ref = ref.reshape(shape)
    assert np.abs(x[0] - ref).max() <= 2.5 / 255
    assert np.abs(x[0] - ref).mean() <= 0.6 / 255


def test_grey_files_become_rgb(tmp_path):
    for i in range(3):
        _photo(20, 20, i, "L").save(tmp_path / f"{i}.png")
    x = next(iter(_make(tmp_path, (20, 20, 3)).train)).numpy()
    np.testing.assert_array_equal(x[..., 0], x[..., 1])
    np.testing.assert_array_equal(x[..., 0], x[..., 2])


def test_flip_and_max_examples(tree):
    ds = _make(tree, flip=True, max_examples=2)
    assert (ds.num_train, ds.num_validation) == (2, 1)
    assert next(iter(ds.train)).shape[0] == 2


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"image folder .*nope does not exist"):
        _make(tmp_path / "nope")


def test_not_a_folder(tmp_path):
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(DataError, match=r"is not a folder"):
        _make(tmp_path / "file.png")


def test_empty_folder(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"no images found under .*searched recursively"):
        _make(tmp_path)


def test_single_image_is_not_enough(tmp_path):
    _photo(8, 8).save(tmp_path / "only.png")
    with pytest.raises(DataError, match=r"found 1 images under .*need at least 2"):
        _make(tmp_path)


def test_corrupt_file_named(tree):
    (tree / "sub" / "broken.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"cannot read image file .*broken\.png.*fix or remove it"):
        _make(tree)


def test_truncated_jpeg_named(tree):
    data = (tree / "b.JPG").read_bytes()
    (tree / "b.JPG").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cannot read image file .*b\.JPG"):
        _make(tree)


def test_wrong_format_named(tree):
    _photo(10, 10).save(tree / "sneaky.png", format="TIFF")
    with pytest.raises(DataError, match=r"sneaky\.png is TIFF, not JPEG/PNG/BMP/GIF"):
        _make(tree)


def test_jpeg_corrupt_inside_its_scan_is_named(tree):
    """Valid end marker, PIL's verify() passes, but the scan holds a second SOF marker: TF's decoder
    (the one training uses) fails. Found before training, with the file's name."""
    data = (tree / "b.JPG").read_bytes()
    scan = data.find(b"\xff\xda")
    (tree / "b.JPG").write_bytes(data[:scan + 60] + b"\xff\xc0" + data[scan + 62:])
    with Image.open(tree / "b.JPG") as im:
        im.verify()  # the old pre-check's test
    assert (tree / "b.JPG").read_bytes().endswith(b"\xff\xd9")
    with pytest.raises(DataError, match=r"cannot read image file .*b\.JPG \(decoder: jpeg::Uncompress failed\. Invalid JPEG data.*\): fix or"):
        _make(tree)


def test_classes_from_sub_folders_as_keras_infers_them(tmp_path):
    from keras_vae.data.folder import folder_classes

    def paths(*names):
        return [str(tmp_path / n) for n in names]

    assert folder_classes(str(tmp_path), paths("b/1.png", "a/x/2.png", "b/3.png")) == (
        ["a", "b"], pytest.approx(np.array([1, 0, 1])))
    assert folder_classes(str(tmp_path), paths("top.png", "a/1.png", "b/2.png")) is None  # an image at the top
    assert folder_classes(str(tmp_path), paths("a/1.png", "a/deeper/2.png")) is None  # one sub-folder: no classes


def _class_tree(root, per_class=6):
    """Sub-folders dark/ (label 0, grey 50) and light/ (label 1, grey 200) of flat grey images."""
    for name, grey in (("dark", 50), ("light", 200)):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8, 3), grey, np.uint8)).save(root / name / f"{i}.png")
    return root


def test_a_folder_of_class_sub_folders_gives_each_image_its_label(tmp_path):
    ds = make_datasets(DataConfig(source=f"folder:{_class_tree(tmp_path)}", validation_fraction=0.5),
                       image_shape=(8, 8, 1), value_range=(0.0, 1.0), batch_size=4, seed=0, labels=True)
    x, y = ds.validation_arrays()
    assert len(y) == ds.num_validation == 6 and set(y.tolist()) <= {0, 1}
    np.testing.assert_array_equal(y, (x.reshape(len(x), -1).mean(axis=1) > 0.5).astype(y.dtype))
    images, labels = next(iter(ds.train))
    np.testing.assert_array_equal(labels.numpy(), (images.numpy().reshape(len(images), -1).mean(axis=1) > 0.5))


def test_exclude_labels_drops_a_sub_folder_class_and_needs_classes(tmp_path):
    ds = make_datasets(DataConfig(source=f"folder:{_class_tree(tmp_path / 'tree')}", validation_fraction=0.5,
                                  exclude_labels=(1,)),
                       image_shape=(8, 8, 1), value_range=(0.0, 1.0), batch_size=2, seed=0, labels=True)
    x, y = ds.validation_arrays()
    assert ds.num_train + ds.num_validation == 6 and set(y.tolist()) == {0} and x.max() < 0.5
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(4):
        Image.fromarray(np.full((8, 8, 3), 9 * i, np.uint8)).save(flat / f"{i}.png")
    with pytest.raises(DataError, match="not in one sub-folder per class"):
        make_datasets(DataConfig(source=f"folder:{flat}", exclude_labels=(1,)), image_shape=(8, 8, 1),
                      value_range=(0.0, 1.0), batch_size=2, seed=0)
