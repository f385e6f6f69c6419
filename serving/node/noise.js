// keras-vae portable noise: the JavaScript twin of keras_vae/sampling/noise.py (algorithm "lowbias32-box-muller-v1").
//
// portableNoise(seed, n, d) -> {eps: Float32Array(n * d) row-major [n, d] ~ N(0, 1), u: Float32Array(n) in [0, 1)}
// gives the numbers NumPy's keras_vae.sampling.noise.portable_noise(seed, n, d) gives (u exactly, eps to one
// float32 ulp). Works in Node (require('./noise.js')) and in the browser as a classic <script>
// (window.kerasVaeNoise). No dependencies.
//
//   lowbias32(x): x ^= x >>> 16; x *= 0x7FEB352D; x ^= x >>> 15; x *= 0x846CA68B; x ^= x >>> 16   (mod 2^32)
//   key = lowbias32(seed ^ 0x9E3779B9); w(c) = lowbias32(lowbias32(c) ^ key); t(c) = w(c) >>> 8
//   row i owns counters i (2d + 1) + k: eps[i, j] = sqrt(-2 ln((t(2j) + 1) / 2^24)) cos(2 pi t(2j + 1) / 2^24),
//   u[i] = t(2d) / 2^24 (float64 arithmetic, stored as float32)
//
// checkCount(n) / checkSeed(seed): the bounds every sampler.onnx caller applies before drawing (RangeError naming
// the input): n an integer in [1, MAX_BATCH] -- MAX_BATCH = keras_vae.export.contract.MAX_BATCH, the bound of the
// SavedModel sample signatures and of one decoder call -- and seed an integer in [0, 2^32).
(function (root, factory) {
  if (typeof module === 'object' && module.exports) module.exports = factory();
  else root.kerasVaeNoise = factory();
}(typeof self !== 'undefined' ? self : this, function () {
  'use strict';

  const NOISE_ALGORITHM = 'lowbias32-box-muller-v1';
  const UNIT = 1 / 16777216; // 2^-24
  const MAX_BATCH = 1024; // keras_vae.export.contract.MAX_BATCH (tests/serving/test_sample_bounds.py checks it)

  function lowbias32(x) {
    x >>>= 0;
    x ^= x >>> 16;
    x = Math.imul(x, 0x7FEB352D);
    x ^= x >>> 15;
    x = Math.imul(x, 0x846CA68B);
    x ^= x >>> 16;
    return x >>> 0;
  }

  function checkSeed(seed) {
    if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed >= 4294967296) {
      throw new RangeError(`seed must be an integer in [0, 2^32), got ${seed}`);
    }
    return seed;
  }

  // n samples for one sampler.onnx / decoder call: an integer in [1, max].
  function checkCount(n, max = MAX_BATCH) {
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > max) {
      throw new RangeError(`n must be an integer in [1, ${max}] (samples per call; draw more with several seeds), got ${n}`);
    }
    return n;
  }

  function portableNoise(seed, n, d) {
    checkSeed(seed);
    if (!Number.isInteger(n) || !Number.isInteger(d) || n < 0 || d < 1) {
      throw new RangeError(`need an integer n >= 0 and latent size d >= 1, got n=${n}, d=${d}`);
    }
    const stride = 2 * d + 1;
    if (n * stride > 4294967296) throw new RangeError(`n=${n} codes of size ${d} need more than 2^32 counters`);
    const key = lowbias32((seed ^ 0x9E3779B9) >>> 0);
    const top = (c) => (lowbias32(lowbias32(c) ^ key) >>> 8);
    const eps = new Float32Array(n * d);
    const u = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const base = i * stride;
      for (let j = 0; j < d; j++) {
        const a = (top(base + 2 * j) + 1) * UNIT;
        const b = top(base + 2 * j + 1) * UNIT;
        eps[i * d + j] = Math.sqrt(-2 * Math.log(a)) * Math.cos(2 * Math.PI * b);
      }
      u[i] = top(base + 2 * d) * UNIT;
    }
    return { eps, u };
  }

  return { NOISE_ALGORITHM, MAX_BATCH, lowbias32, portableNoise, checkSeed, checkCount };
}));
