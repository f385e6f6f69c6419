"""The in-house feature network: a small conv classifier whose penultimate layer embeds images.

No Inception weights can be downloaded here, so sample-quality metrics (Frechet distance, KID,
precision/recall) use this network instead. **Frechet distances on it are not Inception FID**: their
scale depends on this network, so they only compare models evaluated on the same data with the same
feature network.

- ``mnist_feature_net()``: trained once, deterministically (seed 0), on the embedded MNIST training
  split (4,500 digits) to classify the ten digits; its weights ship inside the package
  (``mnist_feature_net.weights.h5``, ~0.4 MB) with its validation accuracy in ``mnist_feature_net.json``.
  ``python -m keras_vae.evaluation.features`` re-trains it and rewrites both files.
- ``train_feature_net(images, labels)``: the same network on any data. Without labels it learns a
  label-free task: which rotation (0, 90, 180, 270 degrees; 0 or 180 for non-square images) was
  applied. ``keras-vae evaluate RUN`` trains one on the run's training data when the shipped one does
  not fit, and caches it in ``RUN/features/``.

Architecture (input [H, W, C] in [0, 1], resized so its longer side is at most 64): three 3x3 conv
layers (32, 64, 64 filters, stride 2, ReLU), flatten, Dense(64, ReLU) = the features, Dense(classes)
logits (121,994 parameters at 28x28x1).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FEATURE_DIM = 64
MAX_SIDE = 64
PACKAGE_DIR = Path(__file__).parent
MNIST_WEIGHTS = PACKAGE_DIR / "mnist_feature_net.weights.h5"
MNIST_INFO = PACKAGE_DIR / "mnist_feature_net.json"
RUN_SUBDIR = "features"
DEFAULT_EPOCHS = 12
DEFAULT_BATCH = 64
DEFAULT_LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class FeatureNetInfo:
    """What a feature network was trained on and how well it does its task (stored as JSON beside it)."""

    image_shape: tuple[int, int, int]
    num_classes: int
    task: str  # "labels" or "rotation"
    trained_on: str
    num_train: int
    num_validation: int
    validation_accuracy: float
    epochs: int
    seed: int

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "FeatureNetInfo":
        values = json.loads(text)
        values["image_shape"] = tuple(values["image_shape"])
        return cls(**values)


def build_feature_net(image_shape: tuple[int, int, int], num_classes: int):
    """The (uncompiled) classifier: images [B, H, W, C] in [0, 1] -> logits [B, num_classes];
    its layer named "features" gives the [B, 64] embedding."""
    import keras

    height, width, channels = (int(s) for s in image_shape)
    inputs = keras.Input(shape=(height, width, channels), name="image")
    h = inputs
    scale = MAX_SIDE / max(height, width)
    if scale < 1:
        h = keras.layers.Resizing(max(1, round(height * scale)), max(1, round(width * scale)), name="resize")(h)
    for i, filters in enumerate((32, 64, 64)):
        h = keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu", name=f"conv_{i}")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    features = keras.layers.Dense(FEATURE_DIM, activation="relu", name="features")(h)
    logits = keras.layers.Dense(num_classes, name="logits")(features)
    return keras.Model(inputs, logits, name="feature_net")


def rotation_task(images: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Label-free task: each image rotated by k * 90 degrees (k random; k in {0, 2} unless square); returns
    (rotated images, k // step, number of classes)."""
    rng = np.random.default_rng(seed)
    square = images.shape[1] == images.shape[2]
    ks = rng.integers(0, 4, len(images)) if square else 2 * rng.integers(0, 2, len(images))
    rotated = np.stack([np.rot90(image, k, axes=(0, 1)) for image, k in zip(images, ks)])
    return rotated, (ks if square else ks // 2).astype(np.int64), 4 if square else 2


def _as_unit_float(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    if images.ndim == 3:
        images = images[..., None]
    return images.astype(np.float32, copy=False)


def train_feature_net(train_images: np.ndarray, train_labels: np.ndarray | None,
                      val_images: np.ndarray, val_labels: np.ndarray | None, *, trained_on: str,
                      epochs: int = DEFAULT_EPOCHS, seed: int = 0, verbose: int = 0):
    """Train the feature network (labels if given, else the rotation task) with a fixed seed;
    returns (model, FeatureNetInfo with the validation accuracy). Images: uint8 or float in [0, 1]."""
    import keras

    train_images, val_images = _as_unit_float(train_images), _as_unit_float(val_images)
    if train_labels is None or val_labels is None:
        task = "rotation"
        train_images, train_y, num_classes = rotation_task(train_images, seed)
        val_images, val_y, _ = rotation_task(val_images, seed + 1)
    else:
        task = "labels"
        train_y, val_y = np.asarray(train_labels, np.int64), np.asarray(val_labels, np.int64)
        num_classes = int(max(train_y.max(), val_y.max())) + 1
    keras.utils.set_random_seed(seed)
    model = build_feature_net(train_images.shape[1:], num_classes)
    model.compile(optimizer=keras.optimizers.Adam(DEFAULT_LEARNING_RATE),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(train_images, train_y, batch_size=DEFAULT_BATCH, epochs=epochs, shuffle=True, verbose=verbose)
    accuracy = classifier_accuracy(model, val_images, val_y)
    info = FeatureNetInfo(image_shape=tuple(int(s) for s in train_images.shape[1:]), num_classes=num_classes,
                          task=task, trained_on=trained_on, num_train=len(train_images),
                          num_validation=len(val_images), validation_accuracy=accuracy, epochs=epochs, seed=seed)
    return model, info


def classifier_accuracy(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """Fraction of images whose arg-max logit is their label."""
    logits = model.predict(_as_unit_float(images), batch_size=batch_size, verbose=0)
    return float(np.mean(np.argmax(logits, axis=1) == np.asarray(labels)))


def save_feature_net(model, info: FeatureNetInfo, weights_path: Path, info_path: Path) -> None:
    """Write the weights (.weights.h5) and the info JSON, each atomically."""
    from keras_vae.utils.files import atomic_path

    bare = build_feature_net(info.image_shape, info.num_classes)  # uncompiled: no optimizer state in the file
    bare.set_weights(model.get_weights())
    with atomic_path(weights_path, suffix=".weights.h5") as tmp:
        bare.save_weights(str(tmp))
    with atomic_path(info_path) as tmp:
        tmp.write_text(info.to_json())


def load_feature_net(weights_path: Path, info_path: Path):
    """(model, FeatureNetInfo) from files written by ``save_feature_net``; clear errors if missing or corrupt."""
    from keras_vae.errors import ArtifactError

    for path in (weights_path, info_path):
        if not Path(path).is_file():
            raise ArtifactError(f"feature network file {str(path)!r} does not exist")
    try:
        info = FeatureNetInfo.from_json(Path(info_path).read_text())
    except (ValueError, TypeError, KeyError) as exc:
        raise ArtifactError(f"{str(info_path)!r} is not a valid feature network description ({exc})") from None
    model = build_feature_net(info.image_shape, info.num_classes)
    try:
        model.load_weights(str(weights_path))
    except Exception as exc:  # noqa: BLE001 - any load failure becomes one clear line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArtifactError(f"cannot load feature network weights {str(weights_path)!r}: {first}") from None
    return model, info


def mnist_feature_net():
    """(model, info) of the shipped network trained on the embedded MNIST digits."""
    return load_feature_net(MNIST_WEIGHTS, MNIST_INFO)


def train_mnist_feature_net(epochs: int = DEFAULT_EPOCHS, seed: int = 0, verbose: int = 0):
    """Re-train the shipped network from scratch on the embedded training split; returns (model, info)."""
    from keras_vae.data.embedded import NAME, load_embedded_mnist
    from keras_vae.data.pipeline import split_indices

    images, labels = load_embedded_mnist()
    train_idx, val_idx = split_indices(len(images), 0.1, "images")
    return train_feature_net(images[train_idx], labels[train_idx], images[val_idx], labels[val_idx],
                             trained_on=f"{NAME}, training split", epochs=epochs, seed=seed, verbose=verbose)


MNIST_SOURCES = ("embedded", "tfds:mnist")
RUN_CAP = 20_000  # at most this many training images for a run's own feature network


def uses_mnist_feature_net(config) -> bool:
    """True when the shipped MNIST network fits the run: 28x28 grey digits from the embedded source or tfds:mnist."""
    return tuple(config.model.image_shape) == (28, 28, 1) and config.data.source in MNIST_SOURCES


def run_feature_paths(run_dir: str | Path) -> tuple[Path, Path]:
    """Where a run's own feature network is cached: RUN/features/feature_net.{weights.h5,json}."""
    folder = Path(run_dir) / RUN_SUBDIR
    return folder / "feature_net.weights.h5", folder / "feature_net.json"


def train_run_feature_net(config, run_dir: str | Path, epochs: int = DEFAULT_EPOCHS, verbose: int = 0):
    """Train the feature network on a run's training data (label-free rotation task, un-binarized [0, 1]
    images, at most RUN_CAP of them) and cache it in the run folder; returns (model, info)."""
    import dataclasses

    from keras_vae.data import make_datasets

    data_config = dataclasses.replace(config.data, binarize=False, flip=False)
    data = make_datasets(data_config, image_shape=config.model.image_shape, value_range=(0.0, 1.0),
                         batch_size=256, seed=config.train.seed)
    chunks, count = [], 0
    for batch in data.train:
        chunks.append(np.asarray(batch))
        count += len(chunks[-1])
        if count >= RUN_CAP:
            break
    train_images = np.concatenate(chunks)[:RUN_CAP]
    val_images, _ = data.validation_arrays()
    model, info = train_feature_net(train_images, None, val_images, None,
                                    trained_on=f"{data.description}, training split of run {Path(run_dir).name}",
                                    epochs=epochs, seed=config.train.seed, verbose=verbose)
    save_feature_net(model, info, *run_feature_paths(run_dir))
    return model, info


def feature_net_for_run(config, run_dir: str | Path, *, train_if_missing: bool, retrain: bool = False,
                        verbose: int = 0):
    """(model, info) of the feature network for a run: the shipped MNIST one where it fits, else the one
    cached in the run folder, else (when ``train_if_missing``) a new one trained on the run's data;
    (None, reason) when there is none."""
    if uses_mnist_feature_net(config) and not retrain:
        return mnist_feature_net()
    weights, info_path = run_feature_paths(run_dir)
    if weights.is_file() and info_path.is_file() and not retrain:
        model, info = load_feature_net(weights, info_path)
        if tuple(info.image_shape) == tuple(config.model.image_shape):
            return model, info
    if train_if_missing or retrain:
        return train_run_feature_net(config, run_dir, verbose=verbose)
    return None, (f"no feature network for {config.data.source} at {tuple(config.model.image_shape)}: run "
                  "'keras-vae evaluate RUN' once to train one on the run's data (cached in RUN/features/)")


def embed(model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Features [N, 64] (the "features" layer) of images in [0, 1] (uint8 is scaled by 1/255)."""
    import keras

    extractor = keras.Model(model.input, model.get_layer("features").output)
    images = _as_unit_float(images)
    chunks = [np.asarray(extractor(images[i:i + batch_size], training=False))
              for i in range(0, len(images), batch_size)]  # direct calls: no predict() retracing per extractor
    return np.concatenate(chunks).astype(np.float64) if chunks else np.zeros((0, FEATURE_DIM))


if __name__ == "__main__":
    trained, trained_info = train_mnist_feature_net(verbose=2)
    save_feature_net(trained, trained_info, MNIST_WEIGHTS, MNIST_INFO)
    print(trained_info.to_json())
