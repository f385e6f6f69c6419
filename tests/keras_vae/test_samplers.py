"""Latent samplers: fits vs NumPy, the drawing rule vs a loop reference, K selection, the JSON file."""
import json

import numpy as np
import pytest
from scipy import stats

from keras_vae.errors import ArtifactError, ConfigError, DataError
from keras_vae.sampling.samplers import (LatentSampler, choose_sampler, draw_noise, fit_gaussian, fit_gmm, fit_samplers,
                                prior_sampler)


def _codes(n=400, d=3, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(d, d))
    mu = rng.normal(size=(n, d)) @ a.T + rng.normal(size=d)
    var = rng.uniform(0.05, 0.5, size=(n, d))
    return mu, var


def _mixture(seed=0, n=3000):
    """Three well-separated 2-D Gaussians with weights 0.2/0.3/0.5."""
    rng = np.random.default_rng(seed)
    centres = np.array([[-6.0, 0.0], [0.0, 6.0], [6.0, -2.0]])
    weights = np.array([0.2, 0.3, 0.5])
    labels = rng.choice(3, size=n, p=weights)
    return centres[labels] + rng.normal(scale=0.7, size=(n, 2)), centres, weights


def test_fit_gaussian_matches_numpy_mean_and_total_covariance():
    mu, var = _codes()
    s = fit_gaussian(mu, var)
    expected_cov = np.cov(mu.T, bias=True) + np.diag(var.mean(axis=0))
    assert s.kind == "gaussian" and s.num_components == 1 and s.fitted_on["examples"] == len(mu)
    np.testing.assert_allclose(s.means[0], mu.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(s.covariances[0], expected_cov, rtol=1e-10, atol=1e-12)
    assert np.all(np.triu(s.scale_tril[0], 1) == 0)


def test_drawing_rule_matches_a_loop_reference():
    rng = np.random.default_rng(1)
    k, d, n = 4, 3, 200
    weights = rng.dirichlet(np.ones(k))
    means = rng.normal(size=(k, d))
    tril = np.tril(rng.normal(size=(k, d, d)))
    idx = np.arange(d)
    tril[:, idx, idx] = np.abs(tril[:, idx, idx]) + 0.1
    s = LatentSampler("gmm", weights, means, tril)
    eps = rng.standard_normal((n, d)).astype(np.float32)
    u = rng.random(n).astype(np.float32)
    u[:3] = [0.0, np.float32(np.cumsum(weights)[0]), np.nextafter(np.float32(1), np.float32(0))]
    cumulative = np.cumsum(weights.astype(np.float32))
    expected = np.empty((n, d), np.float64)
    for i in range(n):
        comp = min(int(np.sum(cumulative <= u[i])), k - 1)
        expected[i] = means[comp] + tril[comp] @ eps[i].astype(np.float64)
    z = s.latents(eps, u)
    assert z.dtype == np.float32 and z.shape == (n, d)
    # float32 arithmetic over d terms of magnitude |L||eps|: a few ulps of the largest term.
    tol = 8 * np.finfo(np.float32).eps * (np.abs(means).max() + d * np.abs(tril).max() * np.abs(eps).max())
    np.testing.assert_allclose(z, expected, atol=tol, rtol=0)
    assert s.components(np.array([0.0], np.float32))[0] == (1 if cumulative[0] <= 0 else 0)


def test_prior_sampler_draws_the_noise_itself_and_seeds_reproduce():
    s = prior_sampler(5)
    eps, _ = draw_noise(3, 7, 5)
    np.testing.assert_array_equal(s.sample(7, seed=3), eps)
    np.testing.assert_array_equal(s.sample(7, seed=3), s.sample(7, seed=3))
    assert not np.array_equal(s.sample(7, seed=3), s.sample(7, seed=4))


def test_gaussian_samples_have_the_fitted_moments():
    mu, var = _codes(d=2)
    s = fit_gaussian(mu, var)
    n = 40000
    z = s.sample(n, seed=0).astype(np.float64)
    cov = s.covariances[0]
    se_mean = np.sqrt(np.diag(cov) / n)
    assert np.all(np.abs(z.mean(axis=0) - s.means[0]) < 5 * se_mean)
    # standard error of a sample covariance entry: sqrt((C_ii C_jj + C_ij^2) / n)
    se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n)
    assert np.all(np.abs(np.cov(z.T) - cov) < 5 * se_cov)


def test_marginal_std_is_the_mixtures_per_axis_standard_deviation():
    s = LatentSampler("gmm", np.array([0.25, 0.75]), np.array([[-2.0, 0.0], [2.0, 1.0]]),
                      np.array([[[1.0, 0.0], [0.5, 0.5]], [[0.5, 0.0], [0.0, 2.0]]]))
    # closed form, axis 0: within 0.25 * 1 + 0.75 * 0.25, between 0.25 * 0.75 * (2 - (-2))^2
    # axis 1: within 0.25 * (0.25 + 0.25) + 0.75 * 4, between 0.25 * 0.75 * (1 - 0)^2
    expected = np.sqrt([0.25 + 0.1875 + 3.0, 0.125 + 3.0 + 0.1875])
    np.testing.assert_allclose(s.marginal_std, expected, rtol=1e-12)
    np.testing.assert_allclose(prior_sampler(3).marginal_std, np.ones(3), rtol=1e-12)
    z = s.sample(40000, seed=1).astype(np.float64)
    # sample std within 5 standard errors (se of a std ~ std / sqrt(2 n) for near-normal tails; 2x margin)
    assert np.all(np.abs(z.std(axis=0) - expected) < 5 * 2 * expected / np.sqrt(2 * len(z)))


def test_log_prob_matches_scipy_mixture_density():
    x, _, _ = _mixture(n=300)
    s = fit_gmm(x[:200], None, x[200:], components=(3,))
    expected = np.log(sum(w * stats.multivariate_normal(m, c).pdf(x[200:])
                          for w, m, c in zip(s.weights, s.means, s.covariances)))
    np.testing.assert_allclose(s.log_prob(x[200:]), expected, rtol=1e-10)


def test_gmm_selection_recovers_three_clusters():
    x, centres, weights = _mixture()
    train, val = x[:2000], x[2000:]
    s = fit_gmm(train, np.zeros_like(train), val, components=(1, 2, 3))
    scores = s.selection["components"]
    assert s.kind == "gmm" and s.num_components == 3 and s.selection["chosen_components"] == 3
    assert scores["3"] > scores["2"] > scores["1"]
    order = [int(np.argmin(np.linalg.norm(s.means - c, axis=1))) for c in centres]
    assert sorted(order) == [0, 1, 2]
    # each centre within 5 standard errors of its component mean (0.7 / sqrt(n_k))
    for c, w, k in zip(centres, weights, order):
        assert np.all(np.abs(s.means[k] - c) < 5 * 0.7 / np.sqrt(w * len(train)))
        assert abs(s.weights[k] - w) < 5 * np.sqrt(w * (1 - w) / len(train))
    # with more candidates than clusters, fewer than 3 components never wins
    wide = fit_gmm(train, None, val, components=(1, 2, 3, 4, 6))
    assert wide.num_components >= 3
    assert wide.selection["components"]["3"] > wide.selection["components"]["2"]


def test_gmm_search_goes_past_16_components_and_stops_at_the_first_size_that_does_not_improve():
    # 24 well-separated clusters on a 6 x 4 grid: 16 components cannot cover them, 32 can
    rng = np.random.default_rng(1)
    centres = np.stack(np.meshgrid(np.arange(6) * 10.0, np.arange(4) * 10.0), -1).reshape(-1, 2)
    x = centres[rng.integers(0, 24, size=6000)] + rng.normal(scale=0.5, size=(6000, 2))
    s = fit_gmm(x[:4800], None, x[4800:])
    scores = {int(k): v for k, v in s.selection["components"].items()}
    assert s.num_components >= 32 and scores[32] > scores[16]
    tried = sorted(scores)
    assert tried == [1, 2, 4, 8, 16, 32, 64, 128][:len(tried)]
    # every size before the last improved on all before it; the last tried did not (or the grid ended)
    assert all(scores[b] > max(scores[a] for a in tried[:i + 1]) for i, b in enumerate(tried[1:-1]))
    assert tried[-1] == 128 or scores[tried[-1]] <= max(scores[k] for k in tried[:-1])


def test_gmm_search_without_early_stop_tries_every_size():
    x, _, _ = _mixture()
    early = fit_gmm(x[:2000], None, x[2000:], components=(1, 2, 3, 4, 5, 6), shrinkage=(0.0,))
    full = fit_gmm(x[:2000], None, x[2000:], components=(1, 2, 3, 4, 5, 6), shrinkage=(0.0,), stop_early=False)
    assert sorted(map(int, full.selection["components"])) == [1, 2, 3, 4, 5, 6]
    tried = [int(k) for k in early.selection["components"]]
    scores = [early.selection["components"][str(k)] for k in tried]
    assert tried == [1, 2, 3, 4, 5, 6][:len(tried)] and len(tried) < 6  # 3 clusters: it stops before 6
    assert scores[-1] <= max(scores[:-1]) and early.num_components == tried[int(np.argmax(scores))] >= 3
    for k in tried:  # the same fits, only fewer of them
        assert full.selection["components"][str(k)] == pytest.approx(early.selection["components"][str(k)], rel=1e-12)


def test_gmm_adds_the_mean_posterior_variance_to_every_component():
    x, _, _ = _mixture(n=600)
    var = np.full_like(x, 0.25)
    plain = fit_gmm(x, None, x[:50], components=(3,), shrinkage=(0.0,))
    noisy = fit_gmm(x, var, x[:50], components=(3,), shrinkage=(0.0,))
    np.testing.assert_allclose(noisy.covariances - plain.covariances,
                               np.broadcast_to(0.25 * np.eye(2), (3, 2, 2)), atol=1e-8)


def test_gmm_shrinkage_adds_lambda_times_the_mean_code_variance_to_the_covariance():
    # K = 1: EM's covariance is the (1/N) sample covariance plus reg_covar on the diagonal, in closed form
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 3)) @ np.array([[2.0, 0, 0], [0.5, 1.0, 0], [0, 0.3, 0.5]])
    var = np.full_like(x, 0.04)
    scale = float(np.mean(x.var(axis=0)))
    for lam in (0.0, 0.1):
        s = fit_gmm(x, var, x[:50], components=(1,), shrinkage=(lam,))
        centred = x - x.mean(axis=0)
        expected = centred.T @ centred / len(x) + (max(lam * scale, 1e-6) + 0.04) * np.eye(3)
        np.testing.assert_allclose(s.covariances[0], expected, rtol=1e-9, atol=1e-12)
        assert s.selection["chosen_shrinkage"] == lam
        assert s.selection["shrinkage_scale"] == pytest.approx(scale, rel=1e-12)


def test_gmm_shrinkage_wins_where_full_covariances_overfit_and_the_grid_records_every_fit():
    # 20 dimensions, 4 clusters, 240 training codes: 4 full covariances (840 parameters) overfit; shrinkage
    # toward a sphere generalises, and held-out likelihood says so
    rng = np.random.default_rng(4)
    d = 20
    centres = rng.normal(scale=3.0, size=(4, d))
    x = centres[rng.integers(0, 4, size=2240)] + rng.normal(size=(2240, d))
    s = fit_gmm(x[:240], None, x[240:], components=(1, 2, 4, 8), shrinkage=(0.0, 0.03, 0.1))
    grid = s.selection["grid"]
    assert set(grid) == {"0", "0.03", "0.1"}
    best_per_lambda = {lam: max(scores.values()) for lam, scores in grid.items()}
    assert s.selection["chosen_shrinkage"] > 0
    assert best_per_lambda["0"] < max(best_per_lambda["0.03"], best_per_lambda["0.1"])
    chosen_key = f"{s.selection['chosen_shrinkage']:g}"
    assert s.selection["components"] == grid[chosen_key]
    assert np.mean(s.log_prob(x[240:])) == pytest.approx(max(best_per_lambda.values()), rel=1e-12)
    assert s.num_components == int(max(grid[chosen_key], key=grid[chosen_key].get))


def test_gmm_search_gives_the_same_mixture_on_one_worker_as_on_several(monkeypatch):
    import os

    x, _, _ = _mixture()
    parallel = fit_gmm(x[:2000], None, x[2000:], components=(1, 2, 3, 4))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    serial = fit_gmm(x[:2000], None, x[2000:], components=(1, 2, 3, 4))
    assert serial.selection == parallel.selection
    for name in ("weights", "means", "scale_tril"):
        np.testing.assert_array_equal(getattr(serial, name), getattr(parallel, name))


@pytest.mark.parametrize("bad", [(), (-0.1,), (float("nan"),)])
def test_gmm_rejects_invalid_shrinkage(bad):
    x, _, _ = _mixture(n=300)
    with pytest.raises(ConfigError, match="shrinkage"):
        fit_gmm(x[:200], None, x[200:], components=(1,), shrinkage=bad)


def test_choose_sampler_picks_the_highest_validation_likelihood():
    x, _, _ = _mixture()
    candidates = fit_samplers(x[:2000], np.full_like(x[:2000], 0.01), x[2000:], components=(1, 3))
    chosen = choose_sampler(candidates, x[2000:])
    scores = chosen.selection["candidates"]
    assert set(scores) == {"prior", "gaussian", "gmm"}
    assert chosen.kind == "gmm" and scores["gmm"] > scores["gaussian"] > scores["prior"]
    for name, sampler in candidates.items():
        assert scores[name] == pytest.approx(np.mean(sampler.log_prob(x[2000:])), rel=1e-12)
    assert chosen.selection["gmm_components"] == candidates["gmm"].selection["components"]


def test_json_round_trip_is_exact(tmp_path):
    x, _, _ = _mixture(n=500)
    s = fit_gmm(x[:400], np.full_like(x[:400], 0.1), x[400:], components=(2, 3))
    path = s.save(tmp_path / "sampler.json")
    data = json.loads(path.read_text())
    assert data["format"] == "keras-vae-latent-sampler" and data["version"] == 1
    assert data["kind"] == "gmm" and data["latent_dim"] == 2 and data["fitted_on"]["mode"] == "inference"
    back = LatentSampler.load(path, latent_dim=2)
    for name in ("weights", "means", "scale_tril"):
        np.testing.assert_array_equal(getattr(back, name), getattr(s, name))
    np.testing.assert_array_equal(back.sample(20, seed=5), s.sample(20, seed=5))
    assert back.selection == json.loads(json.dumps(s.to_dict()["selection"]))
    assert not list(tmp_path.glob(".sampler.json*"))  # no temporary file left behind


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(format="other"), "not a keras-vae latent sampler"),
    (lambda d: d.update(version=99), "sampler version 99"),
    (lambda d: d.pop("means"), "field 'means' is missing"),
    (lambda d: d.update(weights=[0.5, 0.2]), "sum to 1"),
    (lambda d: d.update(kind="maf"), "kind 'maf'"),
    (lambda d: d["scale_tril"][0][0].__setitem__(1, 1.0), "not lower-triangular"),
    (lambda d: d["scale_tril"][0][0].__setitem__(0, -1.0), "positive diagonal"),
    (lambda d: d.update(latent_dim=3), "latent_dim 3"),
    (lambda d: d.update(means=[[0.0, "x"], [1.0, 1.0]]), "corrupt"),
])
def test_corrupt_sampler_file_gives_a_clear_error(tmp_path, edit, message):
    s = LatentSampler("gmm", np.array([0.5, 0.5]), np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    data = s.to_dict()
    edit(data)
    path = tmp_path / "sampler.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=message) as info:
        LatentSampler.load(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_missing_and_mismatched_files(tmp_path):
    path = prior_sampler(4).save(tmp_path / "sampler.json")
    with pytest.raises(ArtifactError, match="latent dimension 4 but the model has 8"):
        LatentSampler.load(path, latent_dim=8)
    path.write_text(path.read_text()[:40])
    with pytest.raises(ArtifactError, match="not valid JSON"):
        LatentSampler.load(path)
    with pytest.raises(ArtifactError, match="does not exist"):
        LatentSampler.load(tmp_path / "missing.json")


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="one component"):
        LatentSampler("gaussian", np.array([0.5, 0.5]), np.zeros((2, 2)), np.stack([np.eye(2)] * 2))
    with pytest.raises(DataError, match="NaN"):
        fit_gaussian(np.array([[0.0, np.nan], [1.0, 1.0]]))
    with pytest.raises(DataError, match="eps"):
        prior_sampler(3).latents(np.zeros((2, 4)), np.zeros(2))


def test_rebatching_keeps_every_image_in_order():
    from keras_vae.training.after_fit import _limited, _rebatched

    batches = [np.arange(i, i + n)[:, None] for i, n in ((0, 3), (3, 5), (8, 1), (9, 4))]
    out = list(_rebatched(batches, 4))
    assert [len(b) for b in out] == [4, 4, 4, 1]
    np.testing.assert_array_equal(np.concatenate(out)[:, 0], np.arange(13))
    limited = list(_limited(iter(batches), 7))
    assert [len(b) for b in limited] == [3, 4]
    pairs = list(_limited(iter([(b, -b[:, 0]) for b in batches]), 7, with_labels=True))  # labels cut alike
    assert [(len(x), len(y)) for x, y in pairs] == [(3, 3), (4, 4)]
    np.testing.assert_array_equal(np.concatenate([y for _, y in pairs]), -np.arange(7))
    assert [len(b) for b in _limited(iter([(b, -b) for b in batches]), 7)] == [3, 4]  # images only
