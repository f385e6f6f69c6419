"""Reconstruction quality on [0, 1] images (tf.image): MSE, MAE, PSNR, SSIM and MS-SSIM.

All functions take images [N, H, W, C] in [0, 1] (every model's output is converted with ``to_unit``
first, so the classic VAE and the VAEGAN are measured on the same scale) and return per-image values
or their means:

    MSE  = mean (x - y)^2            MAE = mean |x - y|        PSNR = 10 log10(1 / MSE)   (max value 1)
    SSIM = mean over 11x11 Gaussian windows (sigma 1.5) of
           (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
           C1 = (0.01)^2, C2 = (0.03)^2                          (Wang et al. 2004)
    MS-SSIM: SSIM's contrast-structure term at 5 scales (the standard weights of Wang et al. 2003),
           only where the image is large enough: min(H, W) >= 11 * 2^4 = 176.
"""
from __future__ import annotations

from typing import Any

import numpy as np

SSIM_FILTER = 11
MS_SSIM_SCALES = 5
MS_SSIM_MIN_SIDE = SSIM_FILTER * 2 ** (MS_SSIM_SCALES - 1)


def psnr_from_mse(mse: np.ndarray | float) -> np.ndarray | float:
    """PSNR in dB for images with maximum value 1: 10 log10(1 / MSE) (inf for identical images)."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(1.0 / np.asarray(mse, np.float64))


def per_image_quality(x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-image MSE, MAE, PSNR, SSIM (and MS-SSIM when min(H, W) >= 176) between x and y in [0, 1]."""
    import tensorflow as tf

    x, y = np.asarray(x, np.float32), np.asarray(y, np.float32)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"images must be two [N, H, W, C] arrays of the same shape, got {x.shape} and {y.shape}")
    mse = np.mean((x.astype(np.float64) - y) ** 2, axis=(1, 2, 3))
    result = {"mse": mse, "mae": np.mean(np.abs(x.astype(np.float64) - y), axis=(1, 2, 3)),
              "psnr": psnr_from_mse(mse)}
    if min(x.shape[1:3]) >= SSIM_FILTER:
        result["ssim"] = tf.image.ssim(x, y, max_val=1.0, filter_size=SSIM_FILTER).numpy().astype(np.float64)
    if min(x.shape[1:3]) >= MS_SSIM_MIN_SIDE:
        result["ms_ssim"] = tf.image.ssim_multiscale(x, y, max_val=1.0, filter_size=SSIM_FILTER).numpy().astype(
            np.float64)
    return result


def reconstruction_quality(model, images: np.ndarray, batch_size: int = 256) -> dict[str, Any]:
    """Means of ``per_image_quality`` between images (model range) and the model's reconstructions
    decode(E[z|x]), both converted to [0, 1]; PSNR is averaged per image over finite values."""
    parts: dict[str, list] = {}
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size]
        recon = np.asarray(model.to_unit(model.reconstruct(x)))
        for name, values in per_image_quality(np.asarray(model.to_unit(x)), recon).items():
            parts.setdefault(name, []).append(values)
    result: dict[str, Any] = {"examples": int(len(images))}
    for name, chunks in parts.items():
        values = np.concatenate(chunks)
        result[name] = float(np.mean(values[np.isfinite(values)]))
    if "ms_ssim" not in result:
        result["ms_ssim_skipped"] = f"MS-SSIM needs min(H, W) >= {MS_SSIM_MIN_SIDE} (5 scales, 11x11 window)"
    return result
