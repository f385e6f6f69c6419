"""keras_vae.sampling.noise: the portable seed -> noise stream (NumPy), against a pure-Python reference."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from keras_vae.errors import DataError
from keras_vae.sampling.noise import NOISE_ALGORITHM, float32_ulp, lowbias32, portable_noise


def _hash_py(x: int) -> int:
    """lowbias32 with Python integers (an independent reference of the uint32 arithmetic)."""
    m = 0xFFFFFFFF
    x &= m
    x ^= x >> 16
    x = (x * 0x7FEB352D) & m
    x ^= x >> 15
    x = (x * 0x846CA68B) & m
    return x ^ (x >> 16)


def _noise_py(seed: int, n: int, d: int):
    """The module doc's algorithm written out with Python ints and math (float64), rounded to float32."""
    key = _hash_py(seed ^ 0x9E3779B9)
    top = lambda c: _hash_py(_hash_py(c) ^ key) >> 8  # noqa: E731
    eps = np.zeros((n, d), np.float32)
    u = np.zeros(n, np.float32)
    for i in range(n):
        base = i * (2 * d + 1)
        for j in range(d):
            a = (top(base + 2 * j) + 1) / 2**24
            b = top(base + 2 * j + 1) / 2**24
            eps[i, j] = math.sqrt(-2.0 * math.log(a)) * math.cos(2.0 * math.pi * b)
        u[i] = top(base + 2 * d) / 2**24
    return eps, u


def test_hash_matches_python_integers():
    xs = np.array([0, 1, 2, 0x9E3779B9, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 123456789], np.uint32)
    assert [int(v) for v in lowbias32(xs)] == [_hash_py(int(x)) for x in xs]
    assert int(lowbias32(np.uint32(0))) == 0  # the hash fixes 0; the stream never feeds it raw (key xor)
    # a bijection: no collisions on a block of consecutive counters
    block = lowbias32(np.arange(1 << 16, dtype=np.uint32))
    assert np.unique(block).size == 1 << 16


@pytest.mark.parametrize("seed, n, d", [(0, 5, 3), (1, 3, 8), (2**32 - 1, 2, 1), (987654321, 4, 16)])
def test_noise_matches_reference(seed, n, d):
    eps, u = portable_noise(seed, n, d)
    ref_eps, ref_u = _noise_py(seed, n, d)
    assert eps.dtype == np.float32 and eps.shape == (n, d) and u.dtype == np.float32 and u.shape == (n,)
    np.testing.assert_array_equal(u, ref_u)  # 24-bit integers times 2^-24: exact everywhere
    # float64 libm (NumPy) vs Python's math: at most one float32 ulp after rounding
    assert np.all(np.abs(eps - ref_eps) <= float32_ulp(ref_eps))
    assert np.all((u >= 0) & (u < 1)) and np.all(np.abs(eps) <= math.sqrt(2 * 24 * math.log(2)))
    # u is on the 2^-24 grid
    assert np.array_equal(u * 2**24, np.floor(u * 2**24))


def test_prefix_seed_and_rows_are_independent():
    eps64, u64 = portable_noise(7, 64, 4)
    eps5, u5 = portable_noise(7, 5, 4)
    np.testing.assert_array_equal(eps64[:5], eps5)
    np.testing.assert_array_equal(u64[:5], u5)
    other, _ = portable_noise(8, 64, 4)
    assert not np.any(eps64 == other)  # a different seed gives different numbers (same positions)
    # row layout: d decides the stride, so the same seed with another d is another stream
    assert not np.array_equal(portable_noise(7, 5, 3)[0][:, :3], eps5[:, :3])
    assert portable_noise(7, 0, 4)[0].shape == (0, 4)


def test_distribution_moments():
    """N(0, 1) and U[0, 1) moments within 5 standard errors of their exact values (fixed seed)."""
    n, d = 4000, 8
    eps, u = portable_noise(123, n, d)
    x = eps.astype(np.float64).ravel()
    m = x.size
    assert abs(x.mean()) < 5 / math.sqrt(m)
    assert abs(x.var() - 1) < 5 * math.sqrt(2 / m)
    assert abs(np.mean(x**4) - 3) < 5 * math.sqrt(96 / m)  # Var(x^4) = 105 - 9
    assert abs(np.mean(np.abs(x) < 1) - 0.682689492) < 5 * math.sqrt(0.25 / m)
    assert abs(u.mean() - 0.5) < 5 * math.sqrt(1 / 12 / n)
    assert abs(np.mean(u < 0.25) - 0.25) < 5 * math.sqrt(0.25 * 0.75 / n)
    # neighbouring coordinates are uncorrelated
    corr = np.corrcoef(eps[:, :-1].ravel(), eps[:, 1:].ravel())[0, 1]
    assert abs(corr) < 5 / math.sqrt(n * (d - 1))


@pytest.mark.parametrize("seed", [-1, 2**32, 1.0, True, "0", None])
def test_bad_seed(seed):
    with pytest.raises(DataError, match=r"seed must be an integer in \[0, 2\^32\)"):
        portable_noise(seed, 2, 2)


def test_bad_counts():
    with pytest.raises(DataError, match="latent size d >= 1"):
        portable_noise(0, 2, 0)
    with pytest.raises(DataError, match="more than the 2\\^32 one seed provides"):
        portable_noise(0, 2**31, 1)
    with pytest.raises(DataError, match="n must be an integer"):
        portable_noise(0, 2.0, 1)


def test_no_tensorflow_import():
    code = "import sys, keras_vae.sampling.noise; print('tensorflow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert NOISE_ALGORITHM == "lowbias32-box-muller-v1"
