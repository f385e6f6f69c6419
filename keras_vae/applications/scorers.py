"""Scorers for design generation: images [B, H, W, C] in [0, 1] -> one score per image [B].

A scorer wraps a function that returns either one number per image, [B] (or [B, 1]), used as the score
itself, or K class scores per image, [B, K], of which ``target`` is kept:

    score = p_target                      when every row is a probability vector (entries in [0, 1], sum 1 +- 1e-3)
    score = softmax(row)_target           otherwise (the row is read as logits)

An image is accepted when score >= ``threshold`` (``--min-prob`` for class probabilities, ``--min-score``
for plain scores). The function comes from

    "digit"          the package's MNIST digit classifier (keras_vae.evaluation.features.mnist_feature_net:
                     three stride-2 convs, 28x28x1 in [0, 1] -> 10 digit logits; trained on the embedded digits)
    FILE.onnx        an ONNX classifier or scorer, run with onnxruntime (input NHWC, NCHW, [B, H, W] or flat)
    FILE.keras       a Keras model file (called with training=False)
    module:function  a Python callable (``module`` importable, or a path to a .py file)

Every way a scorer can fail (missing or corrupt file, wrong output shape, a target class out of range, a
callable that raises) is a ``KerasVAEError`` with one line naming the scorer and the fix.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from keras_vae.errors import ArtifactError, ConfigError, DataError

DIGIT = "digit"  # the built-in scorer: the package's MNIST digit classifier
DIGIT_SHAPE = (28, 28, 1)
PROBABILITY_TOLERANCE = 1e-3  # |sum of a row - 1| below which [B, K] outputs are read as probabilities
SCORER_KINDS = ("digit", "FILE.onnx", "FILE.keras", "module:function")


@dataclass
class Scorer:
    """A function of unit-range images with its acceptance rule: ``score(images) >= threshold``.

    Args:
        fn: images [B, H, W, C] float32 in [0, 1] -> [B], [B, 1] or [B, K] (NumPy or tensors).
        name: how messages and reports name it (e.g. "digit", "cls.onnx").
        threshold: the acceptance threshold on the score.
        target: the class kept from [B, K] outputs (None for one score per image).
    """

    fn: Callable
    name: str
    threshold: float
    target: int | None = None

    @property
    def describe(self) -> str:
        """'digit p(7) >= 0.9' or 'my.mod:f score >= 0'."""
        if self.target is None:
            return f"{self.name} score >= {self.threshold:g}"
        return f"{self.name} p({self.target}) >= {self.threshold:g}"

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Scores [B] float64 of images [B, H, W, C] in [0, 1] (DataError naming the scorer on bad output)."""
        images = np.asarray(images, np.float32)
        try:
            raw = self.fn(images)
        except Exception as exc:  # noqa: BLE001 - a user's scorer failing becomes one line
            if isinstance(exc, (ConfigError, DataError, ArtifactError)):
                raise
            first = (str(exc).strip().splitlines() or [""])[0]
            raise DataError(f"scorer {self.name} failed on a batch of {len(images)} images "
                            f"[B, H, W, C] = {list(images.shape)}: {type(exc).__name__}: {first}") from None
        return class_score(raw, len(images), self.target, self.name)

    def accepts(self, scores: np.ndarray) -> np.ndarray:
        """score >= threshold, bool [B]."""
        return np.asarray(scores) >= self.threshold


def class_score(raw, batch: int, target: int | None, name: str = "scorer") -> np.ndarray:
    """The score [B] (float64) of a scorer's raw output for ``batch`` images: [B] or [B, 1] as is, [B, K]
    -> the probability of ``target`` (a softmax first unless the rows are probability vectors)."""
    try:
        out = np.asarray(raw, np.float64)
    except (TypeError, ValueError):
        raise DataError(f"scorer {name} returned {type(raw).__name__}, not numbers: return an array [B] of scores "
                        "or [B, K] of class probabilities") from None
    if out.ndim == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.ndim not in (1, 2) or out.shape[0] != batch:
        raise DataError(f"scorer {name} returned shape {list(out.shape)} for a batch of {batch}: return one score "
                        f"per image [{batch}] or class probabilities [{batch}, K]")
    if not np.all(np.isfinite(out)):
        raise DataError(f"scorer {name} returned NaN or infinite scores: return finite numbers")
    if out.ndim == 1:
        if target is not None:
            raise ConfigError(f"scorer {name} returns one score per image, not class scores: drop --target "
                              "(and use --min-score)")
        return out
    k = out.shape[1]
    if target is None:
        raise ConfigError(f"scorer {name} returns {k} class scores per image: pass --target 0..{k - 1} "
                          "(the class to generate) and --min-prob")
    if not 0 <= target < k:
        raise ConfigError(f"--target {target} is out of range: scorer {name} has classes 0..{k - 1}")
    if np.all((out >= 0) & (out <= 1)) and np.all(np.abs(out.sum(axis=1) - 1.0) <= PROBABILITY_TOLERANCE):
        return out[:, target]
    shifted = out - out.max(axis=1, keepdims=True)
    return np.exp(shifted[:, target]) / np.exp(shifted).sum(axis=1)


def make_scorer(spec, image_shape, *, target: int | None = None, min_prob: float | None = None,
                min_score: float | None = None, batch_size: int = 256) -> Scorer:
    """A Scorer from ``spec`` (a callable, "digit", FILE.onnx, FILE.keras or module:function) for images of
    ``image_shape``; the threshold is ``min_prob`` (class scores, default 0.9) or ``min_score`` (plain scores).
    The scorer is called once on a blank image, so a wrong output shape or target fails here."""
    if min_prob is not None and target is None:
        raise ConfigError("--min-prob needs --target K (the class whose probability is thresholded); for a scorer "
                          "with one score per image use --min-score")
    if min_prob is not None and min_score is not None:
        raise ConfigError("give --min-prob (class scorers with --target) or --min-score (one score per image), "
                          "not both")
    if min_prob is not None and not 0.0 <= min_prob <= 1.0:
        raise ConfigError(f"--min-prob must be a probability in [0, 1], e.g. 0.9, got {min_prob}")
    if target is not None and (isinstance(target, bool) or int(target) != target or target < 0):
        raise ConfigError(f"--target must be a class index >= 0, got {target!r}")
    if target is None and min_score is None:
        raise ConfigError("a scorer without --target needs --min-score S: the score an image must reach to be "
                          "accepted")
    threshold = float(min_score if min_score is not None else (0.9 if min_prob is None else min_prob))
    if not np.isfinite(threshold):
        raise ConfigError(f"the acceptance threshold must be finite, got {threshold}")
    shape = tuple(int(s) for s in image_shape)
    fn, name = scorer_function(spec, shape, batch_size)
    scorer = Scorer(fn, name, threshold, None if target is None else int(target))
    scorer(np.zeros((1, *shape), np.float32))  # a blank image: output shape and target checked before any search
    return scorer


def scorer_function(spec, image_shape: tuple[int, int, int], batch_size: int = 256) -> tuple[Callable, str]:
    """(images -> raw outputs, name) of a scorer spec; see the module docstring for the kinds."""
    if callable(spec):
        return spec, getattr(spec, "__name__", type(spec).__name__)
    if not isinstance(spec, (str, Path)) or not str(spec):
        raise ConfigError(f"--scorer must be {', '.join(SCORER_KINDS)}, got {spec!r}")
    text = str(spec)
    if text == DIGIT:
        return digit_classifier(image_shape), DIGIT
    path = Path(text)
    if path.suffix.lower() == ".onnx":
        return onnx_classifier(path, image_shape, batch_size), path.name
    if path.suffix.lower() == ".keras":
        return keras_classifier(path, batch_size), path.name
    if ":" in text:
        return python_function(text), text
    raise ConfigError(f"--scorer {text!r}: expected {', '.join(SCORER_KINDS)} (a file needs the .onnx or .keras "
                      "extension)")


def digit_classifier(image_shape: tuple[int, int, int]) -> Callable:
    """The package's MNIST classifier: images [B, 28, 28, 1] in [0, 1] -> 10 digit logits."""
    if tuple(image_shape) != DIGIT_SHAPE:
        raise ConfigError(f"--scorer digit is the package's MNIST digit classifier (28x28x1 images); this run makes "
                          f"{'x'.join(map(str, image_shape))} images: pass --scorer FILE.onnx, FILE.keras or "
                          "module:function")
    from keras_vae.evaluation.features import mnist_feature_net

    model, _ = mnist_feature_net()
    return _batched(lambda x: np.asarray(model(x, training=False)), 256)


def _batched(fn: Callable, batch_size: int) -> Callable:
    def run(images: np.ndarray) -> np.ndarray:
        return np.concatenate([np.asarray(fn(images[i:i + batch_size]))
                               for i in range(0, len(images), batch_size)]) if len(images) else np.zeros((0,))
    return run


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise ArtifactError(f"scorer file {str(path)!r} does not exist: pass the path of a trained classifier")


def onnx_classifier(path: str | Path, image_shape: tuple[int, int, int], batch_size: int = 256) -> Callable:
    """An ONNX model run with onnxruntime on CPU; its first input takes the images as NHWC [B, H, W, C],
    NCHW [B, C, H, W], [B, H, W] (one channel) or flat [B, H*W*C], by its declared shape."""
    import onnxruntime as ort

    path = Path(path)
    _check_file(path)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime's many load errors become one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArtifactError(f"scorer file {str(path)!r} is not a valid ONNX model ({first[:200]}): export the "
                            "classifier again") from None
    feed = session.get_inputs()[0]
    h, w, c = image_shape
    dims = list(feed.shape)
    fixed = [d if isinstance(d, int) else None for d in dims]
    layouts = {4: [(h, w, c), (c, h, w)], 3: [(h, w)] if c == 1 else [], 2: [(h * w * c,)]}
    layout = next((shape for shape in layouts.get(len(dims), [])
                   if all(f is None or f == s for f, s in zip(fixed[1:], shape))), None)
    if layout is None:
        raise DataError(f"scorer {path.name} takes input {feed.name!r} of shape {dims}, not images of shape "
                        f"[B, {h}, {w}, {c}] (NHWC, NCHW, [B, H, W] or flat): export it for this run's images")
    batch = fixed[0] if fixed[0] else batch_size

    def arrange(x: np.ndarray) -> np.ndarray:
        if layout == (c, h, w) and (c, h, w) != (h, w, c):
            return np.transpose(x, (0, 3, 1, 2))
        return x.reshape((len(x), *layout))

    def run(x: np.ndarray) -> np.ndarray:
        x, n = arrange(x), len(x)
        if fixed[0] and n != fixed[0]:  # a fixed batch size: pad the last chunk
            x = np.concatenate([x, np.zeros((fixed[0] - n, *x.shape[1:]), x.dtype)])
        return session.run(None, {feed.name: x})[0][:n]

    def scores(images: np.ndarray) -> np.ndarray:
        chunks = []
        for i in range(0, len(images), batch):
            chunk = images[i:i + batch]
            try:
                chunks.append(np.asarray(run(chunk))[:len(chunk)])
            except Exception as exc:  # noqa: BLE001 - onnxruntime's errors become one line
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise DataError(f"scorer {path.name} failed on images [B, {h}, {w}, {c}]: {first[:200]}") from None
        return np.concatenate(chunks)

    return scores


def keras_classifier(path: str | Path, batch_size: int = 256) -> Callable:
    """A ``.keras`` model file called on the images (training=False), ``batch_size`` at a time."""
    import keras

    path = Path(path)
    _check_file(path)
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - any load failure becomes one clear line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ArtifactError(f"scorer file {str(path)!r} is not a loadable Keras model ({first[:200]}): save it "
                            "again with model.save('FILE.keras')") from None
    return _batched(lambda x: np.asarray(model(x, training=False)), batch_size)


def python_function(spec: str) -> Callable:
    """``module:function`` (an importable module, or a path to a .py file) -> the function."""
    module_name, _, attr = spec.rpartition(":")
    if not module_name or not attr:
        raise ConfigError(f"--scorer {spec!r} must look like module:function, e.g. my_scorers:is_seven")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.is_file():
                raise ArtifactError(f"scorer file {module_name!r} does not exist")
            loader_spec = importlib.util.spec_from_file_location(file.stem, file)
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except ArtifactError:
        raise
    except Exception as exc:  # noqa: BLE001 - an import failure becomes one line
        raise ConfigError(f"--scorer {spec}: cannot import {module_name!r} ({type(exc).__name__}: "
                          f"{(str(exc).splitlines() or [''])[0][:200]}): put it on PYTHONPATH or name its .py "
                          "file") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ConfigError(f"--scorer {spec}: {module_name!r} has no function {attr!r}")
    return fn
