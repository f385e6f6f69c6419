"""Completion by sampling the conditional: the Metropolis-within-Gibbs step and the importance weights
against NumPy on a tiny linear model with a Bernoulli decoder, interval coverage and Brier score against
closed forms, the multiple-imputation point estimate and the mixture's interval against NumPy, seeded
reproducibility, several chains per image, the VAEGAN refusal, and the sampling methods on a trained VAE."""
import numpy as np
import pytest
import tensorflow as tf

from keras_vae.applications.completion import (Completion, brier_score, complete_all, importance_fill,
                                               importance_log_weights, interval_coverage, make_mask, metropolis_fill,
                                               multiple_imputation, mwg_step)
from keras_vae.errors import ConfigError
from keras_vae.models.likelihoods import decoder_distribution


class LinearBernoulli:
    """A 2x2x1-image, 2-latent model with known encoder and decoder: mean = x A + c, log_var = x B - 1,
    logits = z W + b; Bernoulli p(x|z)."""

    latent_dim, value_range = 2, (0.0, 1.0)

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.A, self.B = rng.normal(size=(4, 2)), 0.5 * rng.normal(size=(4, 2))
        self.c, self.W, self.b = rng.normal(size=2), 1.5 * rng.normal(size=(2, 4)), rng.normal(size=4)

    def encode(self, x):
        flat = tf.reshape(tf.cast(x, tf.float64), [-1, 4])
        return tf.cast(flat @ self.A + self.c, tf.float32), tf.cast(flat @ self.B - 1.0, tf.float32)

    def decoder(self, z, training=False):
        return tf.reshape(tf.cast(tf.cast(z, tf.float64) @ self.W + self.b, tf.float32), [-1, 2, 2, 1])

    def likelihood(self, output):
        return decoder_distribution(output, "bernoulli")

    def decode_output_to_image(self, output):
        return tf.sigmoid(output)

    def decode(self, z):
        return self.decode_output_to_image(self.decoder(z))

    def to_unit(self, x):
        return x

    def from_unit(self, x):
        return x

    # NumPy references
    def np_encode(self, x):
        flat = x.reshape(len(x), 4).astype(np.float64)
        return flat @ self.A + self.c, flat @ self.B - 1.0

    def np_log_px(self, x, z, observed=None):
        """Per image sum of log Bernoulli(x_i; sigmoid(logit_i)) (over observed pixels when given)."""
        logits = z @ self.W + self.b
        flat = x.reshape(len(x), 4)
        log_p = flat * -np.log1p(np.exp(-logits)) + (1 - flat) * -np.log1p(np.exp(logits))
        if observed is not None:
            log_p = log_p * observed.reshape(len(x), 4)
        return log_p.sum(-1)


def np_log_normal(z, mean, log_var):
    return (-0.5 * (np.log(2 * np.pi) + log_var + (z - mean) ** 2 / np.exp(log_var))).sum(-1)


def _data(n=5, seed=1):
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 2, 2, 1)) < 0.5).astype(np.float32)
    mask = np.zeros((n, 2, 2, 1), bool)
    mask[:, 0, :] = True  # the top row missing
    return x, mask


def test_metropolis_step_acceptance_ratio_matches_numpy():
    model = LinearBernoulli()
    x, mask = _data(64)
    z = tf.constant(np.random.default_rng(2).normal(size=(64, 2)), tf.float32)
    seed = tf.constant([7, 3], tf.int32)
    state = mwg_step(model, tf.constant(x), tf.constant(mask, tf.float32), z, seed)
    mean, log_var = model.np_encode(x)  # the proposal is the encoder at the current completion
    eps = tf.random.stateless_normal([64, 2], seed=tf.random.experimental.stateless_split(seed, 3)[0]).numpy()
    np.testing.assert_allclose(state["z_proposed"], mean + np.exp(0.5 * log_var) * eps, rtol=1e-5, atol=1e-5)
    zp, zc = state["z_proposed"].numpy().astype(np.float64), z.numpy().astype(np.float64)
    # rho = p(x|z') p(z') q(z_t|x) / [p(x|z_t) p(z_t) q(z'|x)], x = (x_obs, x_miss_t)
    log_rho = (model.np_log_px(x, zp) + np_log_normal(zp, 0, 0) + np_log_normal(zc, mean, log_var)
               - model.np_log_px(x, zc) - np_log_normal(zc, 0, 0) - np_log_normal(zp, mean, log_var))
    np.testing.assert_allclose(state["log_rho"], log_rho, rtol=1e-4, atol=1e-4)
    accepted = state["accepted"].numpy()
    assert accepted[log_rho > 1e-3].all() and 0 < accepted.sum() < 64  # u < 1 accepts every rho >= 1
    np.testing.assert_allclose(state["z"], np.where(accepted[:, None], zp, zc), rtol=1e-6)
    x_next = state["x"].numpy()
    np.testing.assert_array_equal(x_next[~mask], x[~mask])  # observed pixels kept
    assert set(np.unique(x_next[mask])) <= {0.0, 1.0}  # x_miss ~ Bernoulli
    logits = state["z"].numpy().astype(np.float64) @ model.W + model.b
    np.testing.assert_allclose(state["mean"].numpy().reshape(64, 4), 1 / (1 + np.exp(-logits)), rtol=1e-5)


def test_importance_weights_and_estimate_match_numpy():
    model = LinearBernoulli(seed=4)
    x, mask = _data(3)
    init = np.full_like(x, 0.5)
    z = np.random.default_rng(5).normal(size=(6, 3, 2))
    log_w, _ = importance_log_weights(model, x, mask, init, tf.constant(z, tf.float32))
    x_init = np.where(mask, init, x)
    mean, log_var = model.np_encode(x_init)
    expected = model.np_log_px(x, z, ~mask) + np_log_normal(z, 0, 0) - np_log_normal(z, mean, log_var)
    np.testing.assert_allclose(log_w, expected, rtol=1e-4, atol=1e-4)
    # the estimate: 7 draws in chunks of 3 (running log-sum-exp) against the self-normalised sum in NumPy
    filled, samples, ess = importance_fill(model, x, mask, init, samples=7, completions=4, seed=9, chunk=3)
    eps = np.concatenate([tf.random.stateless_normal([c, 3, 2], seed=[9, s]).numpy()
                          for s, c in ((0, 3), (3, 3), (6, 1))])
    z = mean + np.exp(0.5 * log_var) * eps
    log_w = model.np_log_px(x, z, ~mask) + np_log_normal(z, 0, 0) - np_log_normal(z, mean, log_var)
    w = np.exp(log_w - log_w.max(0))
    w /= w.sum(0)
    decoded = 1 / (1 + np.exp(-(z @ model.W + model.b)))  # [S, N, 4]
    np.testing.assert_allclose(filled.reshape(3, 4)[mask.reshape(3, 4)],
                               np.einsum("sn,snp->np", w, decoded)[mask.reshape(3, 4)], rtol=1e-5)
    np.testing.assert_allclose(ess, 1 / (w ** 2).sum(0), rtol=1e-5)
    assert samples.shape == (4, 3, 2, 2, 1)
    for k in range(4):  # every resampled completion is E[x | z_s] of one of the draws
        for i in range(3):
            dist = np.abs(decoded[:, i] - samples[k, i].ravel()[None])[:, mask[i].ravel()].max(1)
            assert dist.min() < 1e-5


def test_coverage_and_brier_closed_forms():
    prob = np.array([0.5, 0.2, 0.0, 0.0, 1.0, 0.9, 0.3]).reshape(1, 7, 1, 1)
    truth = np.array([0, 1, 0, 1, 1, 0, 1]).reshape(1, 7, 1, 1)
    mask = np.array([1, 1, 1, 1, 1, 1, 0], bool).reshape(1, 7, 1, 1)
    # u ~ U(0, 1-p) for y = 0, U(1-p, 1) for y = 1; covered in [0.05, 0.95]:
    # 0.45/0.5, 0.15/0.2, 0.9/1, point at 1 -> 0, 0.9/1, 0.05/0.1; the last pixel is not hidden
    assert interval_coverage(prob, truth, mask) == pytest.approx(np.mean([0.9, 0.75, 0.9, 0.0, 0.9, 0.5]))
    assert interval_coverage(prob, truth, mask, level=0.5) == pytest.approx(np.mean([0.5, 0, 0.5, 0, 0.5, 0]))
    assert brier_score(prob, truth, mask) == pytest.approx(np.mean([0.25, 0.64, 0, 1, 0, 0.81]))
    # calibrated probabilities cover at the nominal level; 200,000 pixels: s.e. of the mean <= 0.0011
    rng = np.random.default_rng(0)
    p = rng.random((200_000, 1, 1, 1))
    y = rng.random(p.shape) < p
    everything = np.ones(p.shape, bool)
    assert interval_coverage(p, y, everything) == pytest.approx(0.9, abs=0.006)
    assert interval_coverage(p, y, everything, level=0.5) == pytest.approx(0.5, abs=0.006)
    assert interval_coverage(p ** 4, y, everything) < 0.8  # overconfident in zeros: under-covers
    assert brier_score(p, y, everything) == pytest.approx(1 / 6, abs=0.003)  # E[p(1-p)] = 1/6


def test_multiple_imputation_and_mixture_interval_match_numpy():
    # one image of 4 pixels, the last 3 hidden; K = 2 completions (per-latent probabilities), a baseline
    truth = np.array([1.0, 1.0, 0.0, 1.0]).reshape(1, 2, 2, 1)
    mask = np.array([False, True, True, True]).reshape(1, 2, 2, 1)
    k = np.array([[1.0, 0.8, 0.4, 0.2], [1.0, 0.4, 0.0, 1.0]]).reshape(2, 1, 2, 2, 1)
    mixture = np.array([1.0, 0.5, 0.25, 0.5]).reshape(1, 2, 2, 1)  # e.g. over more latent draws
    result = Completion(truth, mask, {"metropolis": mixture, "nearest": np.zeros_like(truth)}, "center",
                        samples={"metropolis": k})
    np.testing.assert_allclose(multiple_imputation(k).ravel(), [1.0, 0.6, 0.2, 0.6])
    # hidden squared errors: mean of K (0.16, 0.04, 0.16), completion 1 (0.04, 0.16, 0.64), completion 2 (0.36, 0, 0)
    mse = {"mean": 0.36 / 3, "one": 0.84 / 3, "two": 0.36 / 3}
    db = {key: 10 * np.log10(1 / v) for key, v in mse.items()}
    assert result.summary()["metropolis"][0] == pytest.approx(db["mean"])
    assert result.single_completion()["metropolis"][0] == pytest.approx((db["one"] + db["two"]) / 2)
    assert result.best_of_k()["metropolis"][0] == pytest.approx(max(db["one"], db["two"]))
    assert result.summary()["nearest"][0] == pytest.approx(10 * np.log10(1 / (2 / 3)))
    # the mixture's randomised 90% interval: y = 1, p = 0.5 -> 0.45/0.5; y = 0, p = 0.25 -> 0.7/0.75;
    # y = 1, p = 0.5 -> 0.9; Brier (0.25 + 0.0625 + 0.25) / 3
    cal = result.calibration()["metropolis"]
    assert cal["coverage"] == pytest.approx(np.mean([0.9, 0.7 / 0.75, 0.9]))
    assert cal["brier"] == pytest.approx(0.5625 / 3)


@pytest.mark.slow
def test_sampling_methods_are_seeded():
    model = LinearBernoulli()
    x, mask = _data(4)
    init = np.full_like(x, 0.5)
    a = metropolis_fill(model, x, mask, init, steps=12, completions=3, seed=1)
    b = metropolis_fill(model, x, mask, init, steps=12, completions=3, seed=1)
    c = metropolis_fill(model, x, mask, init, steps=12, completions=3, seed=2)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[1], c[1])
    assert a[1].shape == (3, 4, 2, 2, 1) and a[2].shape == (4,) and np.all((a[2] >= 0) & (a[2] <= 1))
    np.testing.assert_array_equal(a[0][~mask], x[~mask])
    d = importance_fill(model, x, mask, init, samples=20, completions=3, seed=1)
    e = importance_fill(model, x, mask, init, samples=20, completions=3, seed=1)
    for u, v in zip(d, e):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ConfigError, match="completions need as many chain states"):
        metropolis_fill(model, x, mask, init, steps=10, completions=6)
    # three chains per image from importance-resampled latents, one step each without burn-in: the
    # completion (mean over every chain's kept states) is the mean of the three completions
    z0 = importance_fill(model, x, mask, init, samples=20, completions=3, seed=1, return_latents=True)[3]
    assert z0.shape == (3, 4, 2)
    filled, k, acc = metropolis_fill(model, x, mask, init, steps=1, burn_in=0, completions=3, seed=1, z0=z0)
    assert k.shape == (3, 4, 2, 2, 1) and acc.shape == (4,) and np.all((acc >= 0) & (acc <= 1))
    np.testing.assert_allclose(filled, multiple_imputation(k), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(k[:, ~mask[..., 0]], np.broadcast_to(x[~mask[..., 0]], (3, 8, 1)))
    with pytest.raises(ConfigError, match="split evenly over 2 chains"):
        metropolis_fill(model, x, mask, init, steps=4, completions=3, z0=z0[:2])


@pytest.mark.slow
def test_vaegan_is_refused_for_the_sampling_methods():
    from tests.support import vaegan

    model = vaegan.make()
    images = (vaegan.images(4) + 1) / 2
    for method in ("metropolis", "importance"):
        with pytest.raises(ConfigError, match=r"needs the decoder's density p\(x\|z\).*VAEGAN.*iterative or latent"):
            complete_all(model, images, images, "center", methods=("latent", method))


@pytest.mark.slow
def test_sampling_methods_on_a_trained_vae(vae_run):
    from keras_vae.applications.encoding import psnr
    from keras_vae.data.embedded import load_embedded_mnist
    from keras_vae.runs.folder import load_run

    model = load_run(vae_run)[1]
    digits = load_embedded_mnist()[0][:, :, :, None].astype(np.float32) / 255.0
    x = digits[:6]
    result = complete_all(model, x, digits[100:160], "left", methods=("metropolis", "importance"), steps=2,
                          latent_steps=3, completions=3, mwg_steps=8, importance_samples=16, seed=3)
    assert set(result.samples) == {"metropolis", "importance"}
    best = result.best_of_k()
    for method, k in result.samples.items():
        assert k.shape == (3, *x.shape)
        for completion in k:  # observed pixels kept
            np.testing.assert_array_equal(completion[~result.mask[..., 0]], x[~result.mask[..., 0]])
        per_image = np.max([psnr(x, c, result.mask) for c in k], axis=0)
        assert best[method][0] == pytest.approx(per_image.mean())
    calibration = result.calibration()
    assert calibration["nearest"]["brier"] == pytest.approx(brier_score(result.filled["nearest"], x, result.mask))
    assert calibration["metropolis"]["coverage"] == pytest.approx(
        interval_coverage(result.filled["metropolis"], x, result.mask))
    assert 0 < result.diagnostics["metropolis"]["mean_acceptance_rate"] <= 1
    assert 1 <= result.diagnostics["importance"]["min_effective_sample_size"] <= 16
    assert make_mask("left", 6, x.shape[1:]).sum() == result.mask.sum()
