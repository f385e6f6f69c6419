"""Data completion (inpainting): fill masked pixels of [0, 1] images with a trained VAE, and baselines.

``mask`` is True where a pixel is missing, shape [N, H, W, 1] (all channels of a pixel together).

    iterative     x_0 = observed pixels, missing ones from the mean image; then T times
                  x_{t+1} = m_obs * x + m_miss * decode(E[z | x_t])   (iterated conditional re-encoding)
    latent        z* = argmin_z  -log p(x_obs | z) + |z|^2 / 2   (MAP latent given the observed pixels;
                  Adam from the encoder's mean of the iterative result), missing pixels from decode(z*).
                  For a model without a likelihood (VAEGAN) the data term is its training reconstruction
                  loss restricted to observed pixels: reconstruction_weight * sum_obs |x - x_hat| / P.
    mean_fill     missing pixels from the mean training image
    nearest       missing pixels from the training image nearest to x on the observed pixels (L2)

``psnr`` on the masked region (``keras_vae.applications.encoding.psnr`` with the mask) measures each.
``load_reference`` reads the baselines' training images, ``complete_examples`` completes a batch of a
source and keeps where each image came from, ``Completion.save`` writes the report, arrays and preview.
"""
from __future__ import annotations

import numpy as np

from keras_vae.choices import COMPLETION_METHODS
from keras_vae.errors import ConfigError


def parse_mask(spec: str) -> tuple[str, float | None]:
    """'center' | 'left' | 'random:P' (P in (0, 1), the fraction of pixels missing) -> (kind, P)."""
    kind, sep, arg = str(spec).partition(":")
    if kind in ("center", "left") and not sep:
        return kind, None
    if kind == "random" and sep:
        try:
            p = float(arg)
        except ValueError:
            p = -1.0
        if 0.0 < p < 1.0:
            return kind, p
        raise ConfigError(f"mask {spec!r}: the missing fraction after 'random:' must be in (0, 1), e.g. random:0.5")
    raise ConfigError(f"unknown mask {spec!r}: choose 'center', 'left' or 'random:P' (e.g. random:0.5)")


def make_mask(spec: str, n: int, image_shape, seed: int = 0) -> np.ndarray:
    """Boolean masks [n, H, W, 1], True = missing: the central square of half the side (center), the left
    half (left), or each pixel independently with probability P (random:P, seeded, per image)."""
    kind, p = parse_mask(spec)
    h, w = int(image_shape[0]), int(image_shape[1])
    mask = np.zeros((n, h, w, 1), bool)
    if kind == "center":
        mask[:, h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = True
    elif kind == "left":
        mask[:, :, : w // 2] = True
    else:
        mask = np.random.default_rng(seed).random((n, h, w, 1)) < p
    return mask


def _check(images: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images, mask = np.asarray(images, np.float32), np.asarray(mask, bool)
    if images.ndim != 4 or mask.shape != (*images.shape[:3], 1):
        raise ConfigError(f"images [N, H, W, C] and mask [N, H, W, 1] expected, got {images.shape} and {mask.shape}")
    return images, mask


def mean_fill(images: np.ndarray, mask: np.ndarray, mean_image: np.ndarray) -> np.ndarray:
    """Observed pixels kept, missing ones from ``mean_image`` [H, W, C]."""
    images, mask = _check(images, mask)
    return np.where(mask, np.asarray(mean_image, np.float32)[None], images)


def nearest_fill(images: np.ndarray, mask: np.ndarray, reference: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Missing pixels from the reference image with the smallest squared distance on the observed pixels.

    d(x, r) = sum_obs (x - r)^2 = sum_obs x^2 - 2 sum_obs x r + sum_obs r^2, as matrix products.
    """
    images, mask = _check(images, mask)
    ref = np.asarray(reference, np.float32).reshape(len(reference), -1)
    channels = images.shape[-1]
    out = images.copy()
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk].reshape(min(chunk, len(images) - start), -1)
        obs = np.repeat(~mask[start:start + chunk], channels, axis=-1).reshape(len(x), -1).astype(np.float32)
        xo = x * obs
        dist = (xo ** 2).sum(axis=1, keepdims=True) - 2.0 * xo @ ref.T + obs @ (ref ** 2).T
        best = ref[np.argmin(dist, axis=1)].reshape(images[start:start + chunk].shape)
        out[start:start + chunk] = np.where(mask[start:start + chunk], best, images[start:start + chunk])
    return out


def iterative_fill(model, images: np.ndarray, mask: np.ndarray, init: np.ndarray, steps: int = 30) -> np.ndarray:
    """Iterated conditional re-encoding (module docstring) from ``init`` (e.g. ``mean_fill``); [0, 1] in and out."""
    images, mask = _check(images, mask)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    x = np.where(mask, init, images).astype(np.float32)
    for _ in range(steps):
        recon = np.asarray(model.to_unit(model.reconstruct(model.from_unit(x))))
        x = np.where(mask, recon, images)
    return x


def map_objective(model, images: np.ndarray, mask: np.ndarray, z):
    """Per-image -log p(x_obs | z) + |z|^2 / 2 (module docstring; the VAEGAN's data term is its weighted
    MAE) for [0, 1] images, missing-pixel mask and latents z [N, D]; a TF tensor [N]."""
    import tensorflow as tf

    images = np.asarray(images, np.float32)
    low, high = model.value_range
    x_model = tf.constant(images * (high - low) + low)
    observed = tf.constant(np.repeat(~np.asarray(mask, bool), images.shape[-1], axis=-1), tf.float32)
    output = model.decoder(z, training=False)
    if hasattr(model, "likelihood"):  # per-pixel log p(x_i | z) of the decoder's distribution
        log_p = model.likelihood(output).distribution.log_prob(x_model)
        data = -tf.reduce_sum(log_p * observed, axis=[1, 2, 3])
    else:
        weight = float(model.loss_config.reconstruction_weight) / float(np.prod(images.shape[1:]))
        x_hat = model.decode_output_to_image(output)
        data = weight * tf.reduce_sum(tf.abs(x_hat - x_model) * observed, axis=[1, 2, 3])
    return data + 0.5 * tf.reduce_sum(tf.square(z), axis=1)


def latent_fill(model, images: np.ndarray, mask: np.ndarray, init: np.ndarray, steps: int = 200,
                learning_rate: float = 0.05, return_latents: bool = False):
    """MAP latent given the observed pixels (``map_objective``), by Adam on z from the encoder's mean
    of ``init``; [0, 1] in and out (and z* [N, D] with ``return_latents``)."""
    import keras
    import tensorflow as tf

    images, mask = _check(images, mask)
    if steps < 1:
        raise ConfigError(f"steps must be >= 1, got {steps}")
    mean, _ = model.encode(model.from_unit(np.where(mask, init, images)))
    z = tf.Variable(mean)
    optimizer = keras.optimizers.Adam(learning_rate)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(map_objective(model, images, mask, z))
        optimizer.apply_gradients([(tape.gradient(loss, z), z)])
        return loss

    for _ in range(steps):
        step()
    filled = np.where(mask, np.asarray(model.to_unit(model.decode(z))), images)
    return (filled, z.numpy()) if return_latents else filled


class Completion:
    """Completed images ([0, 1], per method), the mask and the originals; PSNR on the masked region."""

    def __init__(self, images: np.ndarray, mask: np.ndarray, filled: dict[str, np.ndarray], mask_spec: str,
                 index: np.ndarray | None = None, names: list[str] | None = None) -> None:
        self.images, self.mask, self.filled, self.mask_spec = images, mask, filled, mask_spec
        self.index, self.names = index, names  # where each image came from, when known

    @property
    def missing_fraction(self) -> float:
        return float(self.mask.mean())

    def psnr(self) -> dict[str, np.ndarray]:
        """Per-image PSNR (dB) of each method on the missing pixels."""
        from keras_vae.applications.encoding import psnr

        return {m: psnr(self.images, x, self.mask) for m, x in self.filled.items()}

    def summary(self) -> dict[str, tuple[float, float]]:
        """{method: (mean PSNR, standard error)} over images."""
        out = {}
        for m, v in self.psnr().items():
            v = v[np.isfinite(v)]
            out[m] = (float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0)
        return out

    def save(self, out_dir, index: np.ndarray | None = None, names: list[str] | None = None,
             extra: dict | None = None, preview: int = 8) -> None:
        """Write report.json (``extra`` first), completed.npz (uint8 images per method and the original, mask,
        index, names) and completions.png (rows: masked input, each method, original; ``preview`` columns).
        ``index`` and ``names`` default to the Completion's own (positions 0..N-1 when it has none)."""
        from pathlib import Path

        from keras_vae.utils.files import atomic_path, write_json
        from keras_vae.utils.images import save_grid, to_uint8

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        summary = self.summary()
        report = {**(extra or {}), "mask": self.mask_spec, "images": int(len(self.images)),
                  "missing_fraction": self.missing_fraction,
                  "psnr_masked_db": {m: {"mean": mean, "stderr": se} for m, (mean, se) in summary.items()},
                  "definition": "PSNR = 10 log10(1 / MSE) on [0, 1] pixels, MSE over the masked pixels of each "
                                "image, averaged over images"}
        write_json(out_dir / "report.json", report)
        arrays = {f"{m}": to_uint8(x) for m, x in self.filled.items()}
        index = self.index if index is None else index
        index = np.arange(len(self.images)) if index is None else index
        names = self.names if names is None else names
        arrays.update(original=to_uint8(self.images), mask=self.mask, index=np.asarray(index, np.int64))
        if names is not None:
            arrays["names"] = np.array(names, dtype=str)
        with atomic_path(out_dir / "completed.npz", suffix=".npz") as tmp:
            np.savez(tmp, **arrays)
        n = min(preview, len(self.images))
        shown = np.where(self.mask[:n], 0.5, self.images[:n])  # missing pixels shown grey
        rows = [shown] + [self.filled[m][:n] for m in self.filled] + [self.images[:n]]
        save_grid(np.concatenate(rows), out_dir / "completions.png", cols=n, pad=1)


def complete_all(model, images: np.ndarray, reference: np.ndarray, mask_spec: str, *,
                 methods=COMPLETION_METHODS, steps: int = 30, latent_steps: int = 200,
                 learning_rate: float = 0.05, seed: int = 0, batch_size: int = 256) -> Completion:
    """Mask ``images`` ([0, 1]) with ``mask_spec`` and fill them with each method and both baselines
    (``reference``: training images in [0, 1] for the mean image and the nearest neighbour)."""
    images = np.asarray(images, np.float32)
    mask = make_mask(mask_spec, len(images), images.shape[1:], seed=seed)
    mean_image = np.asarray(reference, np.float32).mean(axis=0)
    base = mean_fill(images, mask, mean_image)
    for method in methods:
        if method not in COMPLETION_METHODS:
            raise ConfigError(f"unknown completion method {method!r}: choose 'iterative' or 'latent'")
    parts: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for s in range(0, len(images), batch_size):
        x, m, b = images[s:s + batch_size], mask[s:s + batch_size], base[s:s + batch_size]
        it = iterative_fill(model, x, m, b, steps=steps)  # also the latent method's starting point
        if "iterative" in parts:
            parts["iterative"].append(it)
        if "latent" in parts:
            parts["latent"].append(latent_fill(model, x, m, it, steps=latent_steps, learning_rate=learning_rate))
    filled = {m: np.concatenate(p) for m, p in parts.items()}
    filled["mean_fill"] = base
    filled["nearest"] = nearest_fill(images, mask, reference)
    return Completion(images, mask, filled, mask_spec)


def load_reference(model, config, max_examples: int = 5000) -> np.ndarray:
    """At most ``max_examples`` training images of the run's own data source (``config.data``), in [0, 1]:
    the mean image and the nearest-neighbour candidates of the baselines."""
    from keras_vae.data import load_source
    from keras_vae.data.examples import load_examples

    reference = load_examples(load_source(config.data), image_shape=config.model.image_shape,
                              value_range=config.model.value_range, split="train", max_examples=max_examples)
    return np.asarray(model.to_unit(reference.images))


def complete_examples(model, examples, reference: np.ndarray, mask_spec: str, **kwargs) -> Completion:
    """``complete_all`` of an ``ExampleBatch`` (images in the model's range, converted to [0, 1]); the
    Completion keeps the batch's index and names for ``save``. ``kwargs`` go to ``complete_all``."""
    result = complete_all(model, np.asarray(model.to_unit(examples.images)), reference, mask_spec, **kwargs)
    result.index, result.names = examples.index, examples.names
    return result
