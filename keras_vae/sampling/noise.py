"""Portable seeded noise: the same standard-normal and uniform numbers in NumPy, TensorFlow and JavaScript.

``portable_noise(seed, n, d) -> (eps [n, d] float32, u [n] float32)`` is what every runtime feeds to
the latent sampler's drawing rule (``keras_vae.sampling.samplers``): ``eps`` ~ N(0, I), ``u`` ~ U[0, 1).
NumPy only (no TensorFlow import). Twins with the identical algorithm:
``export/sampler_tf.py`` (``portable_noise_tf``, inside the SavedModel ``sample`` signature) and
``serving/node/noise.js`` (``portableNoise``, the Node package and the browser explorer).

Algorithm ``NOISE_ALGORITHM`` = "lowbias32-box-muller-v1" (every step exact in uint32 arithmetic,
except the last float64 transcendental step):

1. Hash: ``lowbias32(x)`` (C. Wellons' low-bias 32-bit integer hash, a bijection of uint32):
   ``x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B; x ^= x >> 16`` (mod 2^32).
2. Key of a seed (0 <= seed < 2^32): ``key = lowbias32(seed ^ 0x9E3779B9)``.
3. Word ``c`` of the stream: ``w(c) = lowbias32(lowbias32(c) ^ key)`` for the counter c (uint32).
4. Row ``i`` (one latent code) owns the ``2 d + 1`` counters ``c = i (2d + 1) + k``, so the first rows
   of ``portable_noise(seed, n, d)`` do not depend on ``n`` (a prefix of a longer draw). With
   ``t(c) = w(c) >> 8`` (24 bits; exact as float32 and float64):
   - ``a = (t(i(2d+1) + 2j) + 1) / 2^24`` in (0, 1], ``b = t(i(2d+1) + 2j + 1) / 2^24`` in [0, 1);
     ``eps[i, j] = float32(sqrt(-2 ln a) cos(2 pi b))`` computed in float64 (Box-Muller), j < d;
   - ``u[i] = t(i(2d+1) + 2d) / 2^24`` (exact in float32).

The integers and ``u`` agree exactly across runtimes. ``eps`` goes through float64 ``log``/``cos``,
whose last bits may differ between libm, TensorFlow and JavaScript engines; after rounding to float32
the results agree to one float32 ulp (``np.spacing``), |eps| <= sqrt(2 ln 2^24) = 5.77.
"""
from __future__ import annotations

import numpy as np

from keras_vae.errors import DataError

NOISE_ALGORITHM = "lowbias32-box-muller-v1"
SEED_LIMIT = 2**32  # seeds are integers in [0, 2^32)
GOLDEN = 0x9E3779B9
MULTIPLIERS = (0x7FEB352D, 0x846CA68B)
UNIT = 2.0**-24  # one step of the 24-bit uniforms


def lowbias32(x) -> np.ndarray:
    """The lowbias32 integer hash of uint32 ``x`` (wrapping uint32 arithmetic), elementwise."""
    x = np.asarray(x, dtype=np.uint32)
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint32(16))
        x = x * np.uint32(MULTIPLIERS[0])
        x = x ^ (x >> np.uint32(15))
        x = x * np.uint32(MULTIPLIERS[1])
        x = x ^ (x >> np.uint32(16))
    return x


def check_seed(seed) -> int:
    """``seed`` as a Python int in [0, 2^32); DataError otherwise (bools and floats refused)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise DataError(f"seed must be an integer in [0, 2^32), got {seed!r}")
    seed = int(seed)
    if not 0 <= seed < SEED_LIMIT:
        raise DataError(f"seed must be an integer in [0, 2^32) = [0, 4294967295], got {seed}")
    return seed


def check_counts(n, d) -> tuple[int, int]:
    """(n, d) as ints with n >= 0, d >= 1 and n (2d + 1) <= 2^32 counters; DataError otherwise."""
    for name, value in (("n", n), ("d", d)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise DataError(f"{name} must be an integer, got {value!r}")
    n, d = int(n), int(d)
    if n < 0 or d < 1:
        raise DataError(f"need n >= 0 samples and latent size d >= 1, got n={n}, d={d}")
    if n * (2 * d + 1) > SEED_LIMIT:
        raise DataError(f"n={n} codes of size d={d} need {n * (2 * d + 1)} counters, more than the "
                        f"2^32 one seed provides: draw in several calls with different seeds")
    return n, d


def stream_words(seed: int, counters) -> np.ndarray:
    """w(c) = lowbias32(lowbias32(c) ^ key(seed)) for uint32 counters ``c`` (step 3 above)."""
    key = lowbias32(np.uint32(check_seed(seed)) ^ np.uint32(GOLDEN))
    return lowbias32(lowbias32(counters) ^ key)


def portable_noise(seed: int, n: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    """(eps [n, d] float32 ~ N(0, 1), u [n] float32 ~ U[0, 1)) for ``seed``, as the module doc defines."""
    seed = check_seed(seed)
    n, d = check_counts(n, d)
    stride = 2 * d + 1
    counters = np.arange(n * stride, dtype=np.uint64).astype(np.uint32).reshape(n, stride)
    top = (stream_words(seed, counters) >> np.uint32(8)).astype(np.float64)
    a = (top[:, 0:2 * d:2] + 1.0) * UNIT
    b = top[:, 1:2 * d:2] * UNIT
    eps = (np.sqrt(-2.0 * np.log(a)) * np.cos(2.0 * np.pi * b)).astype(np.float32)
    u = (top[:, 2 * d] * UNIT).astype(np.float32)
    return eps.reshape(n, d), u


def float32_ulp(values) -> np.ndarray:
    """One float32 unit in the last place at each of ``values`` (the cross-runtime tolerance of eps)."""
    return np.spacing(np.abs(np.asarray(values, np.float32)))
