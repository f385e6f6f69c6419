"""Posterior codes and reconstructions of every example of a source, with positions, labels and names.

``encode_examples(model, batches)`` gives the posterior q(z|x) = N(mean, diag(exp(log_var))) of each
image; ``reconstruct_examples`` gives decode(mean) in [0, 1] with per-image MSE and PSNR against the
input. ``batches`` are ``keras_vae.data.examples.ExampleBatch`` objects (``iterate_examples``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from keras_vae.utils.files import atomic_path
from keras_vae.utils.images import to_uint8

MSE_FLOOR = 1e-10  # PSNR is capped at 100 dB (identical images) so means stay finite


@dataclass(frozen=True)
class Codes:
    """Posterior parameters per example ([N, D] each) and where each example came from."""

    mean: np.ndarray
    log_var: np.ndarray
    index: np.ndarray
    labels: np.ndarray | None
    names: list[str] | None


def psnr(reference: np.ndarray, images: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-image PSNR in dB on [0, 1] images: 10 log10(1 / MSE), MSE over the pixels where ``mask`` is True.

    ``mask`` broadcasts against the images ([N, H, W, 1] for all channels); MSE is floored at
    MSE_FLOOR (100 dB). Images whose mask is empty get NaN.
    """
    reference, images = np.asarray(reference, np.float64), np.asarray(images, np.float64)
    sq = (reference - images) ** 2
    if mask is None:
        mse = sq.reshape(len(sq), -1).mean(axis=1)
    else:
        weight = np.broadcast_to(np.asarray(mask, np.float64), sq.shape).reshape(len(sq), -1)
        count = weight.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mse = (sq.reshape(len(sq), -1) * weight).sum(axis=1) / count
    return 10.0 * np.log10(1.0 / np.maximum(mse, MSE_FLOOR))


def _join(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros((0,))


def _keep_provenance(batch, index: list, labels: list, names: list) -> tuple[bool, bool]:
    """Append a batch's source positions, labels and file names; returns (has labels, has names)."""
    index.append(batch.index)
    has_labels, has_names = batch.labels is not None, batch.names is not None
    if has_labels:
        labels.append(batch.labels)
    if has_names:
        names.extend(batch.names)
    return has_labels, has_names


def encode_examples(model, batches: Iterable) -> Codes:
    """Posterior means and log-variances of every image in ``batches`` (images in the model's range)."""
    means, log_vars, index, labels, names = [], [], [], [], []
    has_labels = has_names = None
    for batch in batches:
        mean, log_var = model.encode(batch.images)
        means.append(np.asarray(mean))
        log_vars.append(np.asarray(log_var))
        has_labels, has_names = _keep_provenance(batch, index, labels, names)
    d = model.latent_dim
    return Codes(
        mean=np.concatenate(means) if means else np.zeros((0, d), np.float32),
        log_var=np.concatenate(log_vars) if log_vars else np.zeros((0, d), np.float32),
        index=_join(index).astype(np.int64),
        labels=_join(labels).astype(np.int64) if has_labels else None,
        names=names if has_names else None,
    )


def save_codes(codes: Codes, path: str | Path) -> Path:
    """Write codes as an .npz (mean, log_var, index, and labels / names when known), atomically."""
    arrays = {"mean": codes.mean, "log_var": codes.log_var, "index": codes.index}
    if codes.labels is not None:
        arrays["labels"] = codes.labels
    if codes.names is not None:
        arrays["names"] = np.array(codes.names, dtype=str)
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return path


def reconstruct_examples(model, batches: Iterable, preview: int = 0) -> dict[str, np.ndarray | list | None]:
    """decode(E[z|x]) of every image as uint8 [N, H, W, C], with per-image MSE and PSNR (on [0, 1]).

    With ``preview`` > 0 the result also keeps the first ``preview`` inputs in [0, 1] ("preview_inputs"),
    which ``save_reconstructions`` shows above their reconstructions in preview.png.
    """
    images, mse, index, labels, names = [], [], [], [], []
    inputs: list[np.ndarray] = []
    kept = 0
    has_labels = has_names = False
    for batch in batches:
        x = np.asarray(model.to_unit(batch.images))
        if kept < preview:
            inputs.append(x[:preview - kept])
            kept += len(inputs[-1])
        recon = np.asarray(model.to_unit(model.reconstruct(batch.images)))
        images.append(to_uint8(recon))
        mse.append(((recon.astype(np.float64) - x) ** 2).reshape(len(x), -1).mean(axis=1))
        has_labels, has_names = _keep_provenance(batch, index, labels, names)
    mse_all = _join(mse)
    result = {
        "images": np.concatenate(images) if images else np.zeros((0, *model.image_shape), np.uint8),
        "mse": mse_all,
        "psnr": 10.0 * np.log10(1.0 / np.maximum(mse_all, MSE_FLOOR)),
        "index": _join(index).astype(np.int64),
        "labels": _join(labels).astype(np.int64) if has_labels else None,
        "names": names if has_names else None,
    }
    if preview > 0:
        result["preview_inputs"] = np.concatenate(inputs) if inputs else np.zeros((0, *model.image_shape), np.float32)
    return result


def save_reconstructions(result: dict, out_dir: str | Path, pngs: bool = False) -> list[Path]:
    """Write ``reconstructions.npz`` (and with ``pngs`` one PNG per image, named after the source file
    or the position; when ``result`` has preview inputs, ``preview.png``: those inputs above their
    reconstructions) into ``out_dir``; returns the written paths."""
    from PIL import Image

    from keras_vae.utils.images import save_grid

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays = {k: result[k] for k in ("images", "mse", "psnr", "index")}
    if result["labels"] is not None:
        arrays["labels"] = result["labels"]
    if result["names"] is not None:
        arrays["names"] = np.array(result["names"], dtype=str)
    written = [out_dir / "reconstructions.npz"]
    with atomic_path(written[0], suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    if pngs:
        for k, image in enumerate(result["images"]):
            stem = Path(result["names"][k]).stem if result["names"] is not None else "image"
            path = out_dir / f"{int(result['index'][k]):06d}_{stem}.png"
            with atomic_path(path) as tmp:
                Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp, format="PNG")
            written.append(path)
    shown = result.get("preview_inputs")
    if shown is not None and len(shown):
        n = len(shown)
        written.append(save_grid(np.concatenate([shown, result["images"][:n] / 255.0]), out_dir / "preview.png",
                                 cols=n))
    return written
