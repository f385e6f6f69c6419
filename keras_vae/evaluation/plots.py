"""Figures of a run: samples, reconstructions, latent space, interpolations and traversals.

Each ``plot_*`` takes a model (``LatentVariableModel``) and NumPy images in the model's range,
writes one PNG atomically and returns its path. Images are tiled by ``keras_vae.utils.images.make_grid``
with a 1-pixel white gap. Figures are plain ``matplotlib.figure.Figure``
objects (no pyplot state, no backend switch), so importing this module leaves a notebook's inline
backend alone and works without a display.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from keras_vae.choices import LATENT_PROJECTIONS as PROJECTIONS
from keras_vae.utils.files import atomic_path
from keras_vae.utils.images import make_grid


def _show(ax, grid: np.ndarray) -> None:
    """Draw a uint8 grid of ``make_grid`` on ``ax`` (grey levels 0..255 for one channel), no axes."""
    if grid.shape[-1] == 1:
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax.imshow(grid, interpolation="nearest")
    ax.set_axis_off()


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    return path


def _grid_figure(grid: np.ndarray, title: str, row_labels: list[str] | None = None, rows: int = 1):
    height = max(2.0, min(12.0, grid.shape[0] / 40))
    width = max(2.0, min(12.0, grid.shape[1] / 40))
    fig = Figure(figsize=(width, height + 0.4))
    ax = fig.subplots()
    _show(ax, grid)
    ax.set_title(title, fontsize=9)
    if row_labels:
        ax.set_axis_on()
        ax.set_xticks([])
        step = grid.shape[0] / rows
        ax.set_yticks([step * (i + 0.5) for i in range(rows)], row_labels, fontsize=7)
        for spine in ax.spines.values():
            spine.set_visible(False)
    return fig


def _unit(model, images) -> np.ndarray:
    return np.asarray(model.to_unit(images))


def plot_samples(model, path: str | Path, n: int = 64, seed: int = 0, temperature: float = 1.0) -> Path:
    """A grid of n images decoded from the model's latent sampler (N(0, I) unless one was fitted)."""
    images = _unit(model, model.sample(n, seed=seed, temperature=temperature))
    cols = int(np.ceil(np.sqrt(n)))
    sampler = model.get_latent_sampler()
    what = {"prior": "the prior N(0, I)", "gaussian": "a Gaussian fitted to the codes",
            "flow": "a RealNVP flow fitted to the codes"}.get(
        sampler.kind, f"a {sampler.num_components}-component mixture fitted to the codes")
    title = f"samples from {what} (n={n}, seed={seed}, temperature={temperature:g})"
    return _save(_grid_figure(make_grid(images, cols, pad=1, pad_value=255), title), path)


def plot_class_samples(model, path: str | Path, per_class: int = 10, seed: int = 0,
                       temperature: float = 1.0, class_samplers: dict | None = None) -> Path:
    """A class-conditional model's samples, one row per class: row k decodes p(x|z, y=k) with z from N(0, I)
    (the same ``per_class`` latents in every row, so a column keeps its style across the classes), or with
    ``class_samplers`` ({k: LatentSampler}) z from class k's own sampler (``seed`` for every row)."""
    k = model.num_classes
    labels = np.repeat(np.arange(k), per_class)
    if class_samplers is None:
        z = np.tile(np.asarray(model.sample_latents(per_class, seed=seed, temperature=temperature)), (k, 1))
        source = "N(0, I)"
    else:
        from keras_vae.sampling.samplers import draw_noise

        eps, u = draw_noise(int(seed), per_class, model.latent_dim)
        z = np.concatenate([class_samplers[c].latents(float(temperature) * eps, u) for c in range(k)])
        source = "class y's sampler"
    images = _unit(model, model.decode(z.astype(np.float32), labels=labels))
    title = f"samples p(x|z, y) per class y, z from {source} (seed={seed}, temperature={temperature:g})"
    fig = _grid_figure(make_grid(images, per_class, pad=1, pad_value=255), title,
                       row_labels=[str(i) for i in range(k)], rows=k)
    return _save(fig, path)


def plot_reconstructions(model, images: np.ndarray, path: str | Path, n: int = 16) -> Path:
    """Inputs (top row) above their reconstructions decode(E[z|x]) (bottom row)."""
    x = images[:n]
    both = np.concatenate([_unit(model, x), _unit(model, model.reconstruct(x))])
    grid = make_grid(both, cols=len(x), pad=1, pad_value=255)
    return _save(_grid_figure(grid, "validation inputs (top) and reconstructions (bottom)",
                              ["input", "recon."], rows=2), path)




def project_2d(codes: np.ndarray, method: str = "pca", seed: int = 0) -> tuple[np.ndarray, str, tuple[str, str]]:
    """Codes [N, D] -> (points [N, 2], title, (x label, y label)).

    D <= 2: the codes themselves (z_1, z_2). Otherwise ``"pca"``: the first two principal components
    (axes labelled with the share of the codes' variance each explains); ``"tsne"``: scikit-learn's
    t-SNE (perplexity min(30, (N - 1) / 3), PCA initialisation, seeded), whose axes have no units.
    """
    if method not in PROJECTIONS:
        from keras_vae.errors import ConfigError

        raise ConfigError(f"unknown latent projection {method!r}: choose 'pca' or 'tsne'")
    codes = np.asarray(codes, np.float64)
    if codes.shape[1] == 1:
        return np.concatenate([codes, np.zeros_like(codes)], axis=1), "z", ("z_1", "(none)")
    if codes.shape[1] == 2:
        return codes, "z", ("z_1", "z_2")
    centred = codes - codes.mean(axis=0)
    if method == "tsne" and len(codes) > 4:
        from sklearn.manifold import TSNE

        perplexity = float(min(30.0, (len(codes) - 1) / 3.0))
        points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(centred)
        return points, "t-SNE of posterior means", ("t-SNE 1", "t-SNE 2")
    _, singular, vt = np.linalg.svd(centred, full_matrices=False)
    points = centred @ vt[:2].T  # fewer than 2 columns when N < 2: pad with zeros
    points = np.pad(points, ((0, 0), (0, 2 - points.shape[1])))
    share = np.zeros(2)
    share[:min(2, len(singular))] = singular[:2] ** 2 / max(float(np.sum(singular**2)), 1e-30)
    labels = (f"PC 1 ({share[0]:.0%} of variance)", f"PC 2 ({share[1]:.0%} of variance)")
    return points, "PCA of posterior means", labels


def plot_latent(model, images: np.ndarray, labels: np.ndarray | None, path: str | Path,
                projection: str = "pca", seed: int = 0) -> Path:
    """Posterior means of validation images in 2-D (``project_2d``), coloured by label when labels exist."""
    from keras_vae.evaluation.metrics import encode_all

    means, _ = encode_all(model, images)
    points, how, (xlabel, ylabel) = project_2d(means, projection, seed)
    fig = Figure(figsize=(6, 5))
    ax = fig.subplots()
    if labels is not None:
        scatter = ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8)
        fig.colorbar(scatter, ax=ax, label="label")
    else:
        ax.scatter(points[:, 0], points[:, 1], s=6, alpha=0.8)
    ax.set_title(f"validation codes ({how}, latent dim {means.shape[1]}, n={len(means)})", fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _save(fig, path)


def plot_interpolations(model, images: np.ndarray, path: str | Path, pairs: int = 4, steps: int = 9,
                        seed: int = 0) -> Path:
    """Convex combinations z = (1 - a) z1 + a z2 of posterior means between pairs of images, a in [0, 1]."""
    rng = np.random.default_rng(seed)
    pairs = max(1, min(pairs, len(images) // 2))
    index = np.resize(rng.permutation(len(images)), 2 * pairs)  # one image: interpolate it with itself
    mean, _ = model.encode(images[index])
    mean = np.asarray(mean)
    alphas = np.linspace(0.0, 1.0, steps, dtype=np.float32)[None, :, None]
    z = (1.0 - alphas) * mean[:pairs, None] + alphas * mean[pairs:, None]  # [pairs, steps, D]
    decoded = _unit(model, model.decode(z.reshape(-1, mean.shape[1])))
    grid = make_grid(decoded, cols=steps, pad=1, pad_value=255)
    return _save(_grid_figure(grid, f"interpolations between validation codes ({steps} steps, a = 0..1)"), path)


def plot_traversals(model, images: np.ndarray, path: str | Path, dims: int = 8,
                    values: np.ndarray | None = None) -> Path:
    """z + e_k * eps * s_k for the ``dims`` latent axes with the largest KL, eps on a grid, s_k the
    latent sampler's standard deviation along axis k (its whole mixture: within and between components;
    1 for the prior); one row per axis."""
    from keras_vae.evaluation.metrics import encode_all

    values = np.linspace(-3.0, 3.0, 9, dtype=np.float32) if values is None else np.asarray(values, np.float32)
    means, log_vars = encode_all(model, images[:256])
    kl = 0.5 * np.mean(means**2 + np.exp(log_vars) - 1.0 - log_vars, axis=0)
    order = np.argsort(-kl)[: min(dims, means.shape[1])]
    base = means[0]
    z = np.repeat(base[None, None], len(order), 0).repeat(len(values), 1)  # [dims, steps, D]
    spread = model.get_latent_sampler().marginal_std
    for row, k in enumerate(order):
        z[row, :, k] += values * spread[k]
    decoded = _unit(model, model.decode(z.reshape(-1, means.shape[1]).astype(np.float32)))
    grid = make_grid(decoded, cols=len(values), pad=1, pad_value=255)
    labels = [f"z{k}" for k in order]
    title = f"latent traversals z + e_k * eps * s_k, eps = {values[0]:g}..{values[-1]:g} (axes by KL)"
    return _save(_grid_figure(grid, title, labels, rows=len(order)), path)

