"""Walks in latent space: linear and spherical interpolation, attribute vectors from labels (NumPy only).

    lerp(z0, z1, t)  = (1 - t) z0 + t z1
    slerp(z0, z1, t) = sin((1 - t) w) / sin(w) z0 + sin(t w) / sin(w) z1,  cos(w) = <z0, z1> / (|z0| |z1|)

Under a N(0, I) prior, codes of high dimension concentrate near the sphere of radius sqrt(D);
linear midpoints fall inside it (|z| shrinks by up to 1/sqrt(2) for orthogonal codes), spherical
ones keep the norm when |z0| = |z1| (and interpolate it linearly otherwise, see ``slerp``).
"""
from __future__ import annotations

import numpy as np

from keras_vae.errors import ConfigError


def _pair(z0, z1) -> tuple[np.ndarray, np.ndarray]:
    z0, z1 = np.asarray(z0, np.float64), np.asarray(z1, np.float64)
    if z0.shape != z1.shape or z0.ndim != 1:
        raise ConfigError(f"interpolation needs two codes of the same size [D], got {z0.shape} and {z1.shape}")
    return z0, z1


def _steps(steps) -> np.ndarray:
    t = np.linspace(0.0, 1.0, steps) if np.isscalar(steps) else np.asarray(steps, np.float64)
    if np.isscalar(steps) and int(steps) < 2:
        raise ConfigError(f"steps must be >= 2 (the two end points), got {steps!r}")
    return t


def lerp(z0, z1, steps=9) -> np.ndarray:
    """Linear interpolation: [T, D] codes (1 - t) z0 + t z1 for ``steps`` values of t in [0, 1] (or given t's)."""
    z0, z1 = _pair(z0, z1)
    t = _steps(steps)[:, None]
    return ((1.0 - t) * z0 + t * z1).astype(np.float32)


def slerp(z0, z1, steps=9) -> np.ndarray:
    """Spherical interpolation of the directions, with the norm interpolated linearly: [T, D].

    The direction follows the great circle from z0/|z0| to z1/|z1| (the formula in the module
    docstring on unit vectors) and the norm goes linearly from |z0| to |z1|; for equal norms this
    is exactly Shoemake's slerp. Falls back to ``lerp`` when the angle is ~0 (or a code is 0).
    """
    z0, z1 = _pair(z0, z1)
    t = _steps(steps)[:, None]
    n0, n1 = np.linalg.norm(z0), np.linalg.norm(z1)
    if n0 < 1e-12 or n1 < 1e-12:
        return lerp(z0, z1, steps)
    u0, u1 = z0 / n0, z1 / n1
    omega = np.arccos(np.clip(u0 @ u1, -1.0, 1.0))
    if omega < 1e-6:
        return lerp(z0, z1, steps)
    direction = (np.sin((1.0 - t) * omega) * u0 + np.sin(t * omega) * u1) / np.sin(omega)
    return (direction * ((1.0 - t) * n0 + t * n1)).astype(np.float32)


def attribute_vector(codes, labels, a, b) -> np.ndarray:
    """mean(codes of class a) - mean(codes of class b): [D]; adding it moves a code from b towards a."""
    codes, labels = np.asarray(codes, np.float64), np.asarray(labels)
    if codes.ndim != 2 or labels.shape != (len(codes),):
        raise ConfigError(f"attribute_vector needs codes [N, D] and one label each, got {codes.shape} and {labels.shape}")
    for cls in (a, b):
        if not np.any(labels == cls):
            raise ConfigError(f"no code has label {cls!r} (labels present: {sorted(set(labels.tolist()))})")
    return (codes[labels == a].mean(axis=0) - codes[labels == b].mean(axis=0)).astype(np.float32)


def apply_attribute(z, vector, strengths=(0.0, 0.5, 1.0, 1.5)) -> np.ndarray:
    """z + s * vector for each strength s: [S, D] (z [D]) or [N, S, D] (z [N, D])."""
    z = np.asarray(z, np.float32)
    s = np.asarray(strengths, np.float32)[:, None]
    if z.ndim == 1:
        return z[None] + s * np.asarray(vector, np.float32)
    return z[:, None] + s[None] * np.asarray(vector, np.float32)
