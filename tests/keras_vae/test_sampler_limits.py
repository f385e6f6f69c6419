"""A sampler.json whose values overflow float32 (or whose latents' squares would) is refused at load, naming the field;
latents drawn beyond that range (a huge temperature) are an error, never a garbage picture."""
from __future__ import annotations

import json

import numpy as np
import pytest

from keras_vae.errors import ArtifactError, ConfigError, DataError
from keras_vae.sampling.posterior import load_sampler
from keras_vae.sampling.samplers import LATENT_LIMIT, NOISE_BOUND, LatentSampler, check_latent_range, prior_sampler

D = 4


def _data(means=(0.0,) * D, scale=1.0, weights=(1.0,)):
    k = len(weights)
    return {"format": "keras-vae-latent-sampler", "version": 1, "kind": "gaussian" if k == 1 else "gmm",
            "latent_dim": D, "weights": list(weights), "means": [list(means)] * k,
            "scale_tril": [(np.eye(D) * scale).tolist()] * k}


@pytest.mark.parametrize("data, message", [
    (_data(means=(1e300, 0, 0, 0)), r"means holds a value \(1e\+300\) beyond the float32 range"),
    (_data(scale=1e300), r"scale_tril holds a value \(1e\+300\) beyond the float32 range"),
    (_data(means=(1e20, 0, 0, 0)), r"means holds a value \(1e\+20\) whose square overflows float32"),
    (_data(scale=1e30), r"scale_tril is so large that latents z = m \+ L eps reach 5\.77e\+30, whose square overflows"),
])
def test_values_that_overflow_float32_are_refused_at_load(tmp_path, data, message):
    path = tmp_path / "sampler.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=rf"sampler file '.*sampler\.json' is corrupt: {message}"):
        LatentSampler.load(path, D)
    with pytest.raises(ArtifactError, match=message):
        load_sampler(tmp_path, D)  # what `keras-vae sample RUN_DIR` and `export` read
    with pytest.raises(ConfigError, match=message):  # built in code, too
        LatentSampler("gaussian", np.asarray(data["weights"]), np.asarray(data["means"], np.float64),
                      np.asarray(data["scale_tril"], np.float64))


def test_the_limit_is_where_latents_and_their_squares_stay_finite_in_float32():
    with np.errstate(over="ignore"):
        assert np.isfinite(np.float32(LATENT_LIMIT) ** 2)
        assert not np.isfinite(np.float32(LATENT_LIMIT * 1.01) ** 2)
    # the largest sampler the limit admits draws latents whose squares are finite in float32, at any seed
    scale = 0.99 * LATENT_LIMIT / NOISE_BOUND
    edge = LatentSampler.from_dict(_data(scale=scale))
    z = edge.sample(1000, seed=0)
    assert np.all(np.isfinite(np.square(z, dtype=np.float32)))
    with pytest.raises(ArtifactError, match="scale_tril is so large"):
        LatentSampler.from_dict(_data(scale=1.02 * LATENT_LIMIT / NOISE_BOUND))


def test_fitted_samplers_of_ordinary_size_still_load():
    data = _data(means=(3.0, -2.0, 0.5, 100.0), scale=50.0, weights=(0.5, 0.5))
    assert LatentSampler.from_dict(data).num_components == 2


def test_latents_beyond_the_limit_are_an_error_not_a_picture():
    sampler = prior_sampler(D)
    from keras_vae.sampling.noise import portable_noise

    eps, u = portable_noise(0, 3, D)
    with pytest.raises(DataError, match=r"the drawn latents reach .* lower the temperature"):
        sampler.latents(np.float32(1e30) * eps, u)
    with pytest.raises(DataError, match="the noise holds NaN or infinite values"):
        sampler.latents(np.full((3, D), np.inf, np.float32), u)
    with pytest.raises(DataError, match=r"at index \[1, 2\]"):
        check_latent_range(np.array([[0.0] * D, [0, 0, np.nan, 0]]))
    check_latent_range(sampler.latents(eps, u))  # ordinary latents pass
