"""The conditional benchmark's bookkeeping: seeds of the draws, agreement pooled over draws (mean, standard error,
summed confusion), mean FD, and the markdown rows (mean +- s.e., single draws marked). No model is trained."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.conditional_vae import (agreement, class_images, draw_seed, markdown, mean_fd, measure,
                                        pooled_agreement)


class _Lookup:
    """A 'classifier' whose logits are one-hot of a fixed prediction per image (images carry their index)."""

    def __init__(self, predicted):
        self.predicted = np.asarray(predicted)

    def predict(self, images, batch_size=256, verbose=0):
        index = np.asarray(images).reshape(len(images), -1)[:, 0].astype(int)
        return np.eye(10)[self.predicted[index]]


def test_draw_seeds_are_distinct_and_draw_zero_keeps_the_single_draw_seeds():
    seeds = [draw_seed(0, d, k) for d in range(5) for k in range(10)]
    assert len(set(seeds)) == 50 and [draw_seed(3, 0, k) for k in range(10)] == list(range(3, 13))
    assert draw_seed(0, 2, 7) == 27


def test_agreement_pooled_over_draws_matches_numpy():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 20)
    draws, overall = [], []
    for _ in range(4):
        predicted = np.where(rng.random(len(labels)) < 0.9, labels, rng.integers(0, 10, len(labels)))
        images = np.arange(len(labels), dtype=np.float32)[:, None]
        draws.append(agreement(_Lookup(predicted), images, labels))
        overall.append(np.mean(predicted == labels))
    pooled = pooled_agreement(draws)
    np.testing.assert_allclose(pooled["overall"], np.mean(overall), rtol=1e-12)
    np.testing.assert_allclose(pooled["stderr"], np.std(overall, ddof=1) / 2.0, rtol=1e-12)
    assert pooled["draws"] == 4 and pooled["samples"] == 4 * len(labels)
    confusion = np.asarray(pooled["confusion"])
    assert confusion.sum() == 4 * len(labels) and confusion.shape == (10, 10)
    np.testing.assert_allclose(np.trace(confusion) / confusion.sum(), np.mean(overall), rtol=1e-12)
    for c in range(10):  # each draw has 20 per class, so the mean of the per-class shares is the pooled share
        np.testing.assert_allclose(pooled["per_class"][str(c)], confusion[c, c] / confusion[c].sum(), rtol=1e-12)
    assert pooled_agreement(draws[:1])["stderr"] == 0.0


def test_mean_fd_averages_each_class_over_draws():
    a = {"per_class": {"0": 10.0, "1": 20.0}, "mean": 15.0}
    b = {"per_class": {"0": 30.0, "1": 40.0}, "mean": 35.0}
    assert mean_fd([a, b]) == {"per_class": {"0": 20.0, "1": 30.0}, "mean": 25.0, "draws": 2}


class _Sampler:
    def __init__(self, c):
        self.c = c

    def sample(self, n, seed=0):
        return np.full((n, 2), 1000.0 * seed + self.c, np.float32)


class _Model:
    """Decodes z to a 1x1 'image' holding z[:, 0] (the seed and class); labels passed through."""

    conditional = True

    def decode(self, z, labels=None):
        assert labels is not None
        return np.asarray(z)[:, :1, None, None]

    def to_unit(self, x):
        return x

    def sample_labels(self, n):
        raise AssertionError("labels are given")


def test_class_images_draw_each_class_with_its_draw_seed():
    images, labels = class_images(_Model(), per_class=3, seed=5, class_samplers={c: _Sampler(c) for c in range(10)},
                                  draw=2)
    assert images.shape == (30, 1, 1, 1) and labels.tolist() == np.repeat(np.arange(10), 3).tolist()
    expected = [1000.0 * draw_seed(5, 2, c) + c for c in range(10)]
    np.testing.assert_array_equal(images[::3, 0, 0, 0], expected)


def test_measure_pools_the_draws(monkeypatch):
    import benchmarks.conditional_vae as bench

    seen = []

    def fake_images(model, per_class, seed, class_samplers=None, num_classes=10, draw=0):
        seen.append(draw)
        labels = np.repeat(np.arange(10), per_class)
        return np.zeros((len(labels), 1)), labels

    def fake_agreement(net, images, labels):
        value = 0.9 + 0.01 * seen[-1]
        return {"overall": value, "per_class": {str(c): value for c in range(10)},
                "confusion": np.zeros((10, 10), int).tolist(), "samples": len(labels)}

    monkeypatch.setattr(bench, "class_images", fake_images)
    monkeypatch.setattr(bench, "agreement", fake_agreement)
    monkeypatch.setattr(bench, "per_class_fd", lambda net, images, labels, digits: {
        "per_class": {str(c): float(seen[-1]) for c in range(10)}, "mean": float(seen[-1])})
    result = measure(None, {"mnist_feature_net": None}, {}, per_class=2, seed=0, draws=3)
    assert seen == [0, 1, 2] and result["draws"] == 3
    pooled = result["agreement"]["mnist_feature_net"]
    assert pooled["overall"] == pytest.approx(0.91) and pooled["stderr"] == pytest.approx(0.01 / np.sqrt(3))
    assert result["fd"]["mean"] == pytest.approx(1.0)


def test_markdown_rows_show_mean_and_standard_error_and_mark_single_draws():
    def entry(overall, stderr, draws):
        a = {"overall": overall, "stderr": stderr, "draws": draws, "per_class": {str(c): overall for c in range(10)}}
        if draws == 1:  # a result written before draws: no stderr, no draws
            a = {"overall": overall, "per_class": a["per_class"]}
        return {"agreement": {"mnist_feature_net": a}, "fd": {"per_class": {str(c): 1.0 for c in range(10)},
                                                              "mean": 1.0}}

    run = {"run": "r", "preset": "p", "epochs": 1, "latent_dim": 2}
    result = {"per_class_samples": 100, "seed": 0, "draws": 5,
              "classifiers": {"mnist_feature_net": {"validation_accuracy_on_real_digits": 0.944}},
              "models": {"vae": {"conditional": {**run, "prior": None, "class_samplers": entry(0.9512, 0.0031, 5)}},
                         "vaegan": {"conditional": {**run, "prior": None, "class_samplers": entry(0.952, None, 1)}}}}
    text = markdown(result)
    assert "| classic CVAE, class samplers |" in text and "**95.1%** ± 0.3 |" in text
    assert "**95.2%** (1 draw) |" in text and "rows marked (1 draw)" in text
    del result["models"]["vaegan"]
    assert "rows marked (1 draw)" not in markdown(result)


def test_training_posteriors_draw_mu_plus_sigma_eps_of_the_class_codes():
    from benchmarks.conditional_vae import TrainingPosteriors

    means = np.array([[0.0, 10.0], [4.0, -2.0], [-1.0, 3.0]])
    variances = np.array([[0.25, 1.0], [4.0, 0.01], [1.0, 1.0]])
    posteriors = TrainingPosteriors(means, variances)
    z = posteriors.sample(40000, seed=3)
    np.testing.assert_array_equal(z, posteriors.sample(40000, seed=3))
    assert z.dtype == np.float32 and z.shape == (40000, 2)
    # the equal-weight mixture of N(mu_i, diag sigma_i^2): mean and variance by the law of total variance
    mean = means.mean(axis=0)
    variance = variances.mean(axis=0) + means.var(axis=0)
    n = len(z)
    assert np.all(np.abs(z.mean(axis=0) - mean) < 5 * np.sqrt(variance / n))  # 5 standard errors
    np.testing.assert_allclose(z.var(axis=0), variance, rtol=0.05)
    # each draw lies near one of the codes (within 6 posterior standard deviations)
    distance = np.min(np.max(np.abs(z[:, None] - means[None]) / np.sqrt(variances[None]), axis=2), axis=1)
    assert distance.max() < 6.0
