"""Samplers fitted after training: stored in the run folder, reloaded with it, used by sample()/CLI."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from keras_vae.cli import main
from keras_vae.data import make_datasets
from keras_vae.errors import ArtifactError
from keras_vae.runs.folder import load_run
from keras_vae.sampling.samplers import LatentSampler, draw_noise


@pytest.fixture(scope="module")
def run(trained_vaegan_run):
    """The session's `keras-vae train --preset tiny` run folder (read-only), its configuration and its model."""
    config, model = load_run(trained_vaegan_run)
    return trained_vaegan_run, config, model


def test_run_folder_holds_the_chosen_sampler_and_every_candidate(run):
    out, _, model = run
    chosen = LatentSampler.load(out / "sampler.json", latent_dim=8)
    candidates = {k: LatentSampler.load(out / "samplers" / f"{k}.json", latent_dim=8)
                  for k in ("prior", "gaussian", "gmm")}
    scores = chosen.selection["candidates"]
    assert set(scores) == set(candidates) and chosen.selection["chosen"] == chosen.kind
    assert scores[chosen.kind] == max(scores.values())
    np.testing.assert_array_equal(chosen.means, candidates[chosen.kind].means)
    final = json.loads((out / "metrics.json").read_text())["final"]
    assert final["sampler"]["chosen"] == chosen.kind
    assert final["batch_norm"]["recomputed_from_batches"] >= 1 and final["batch_norm"]["mode"] == "batch"
    assert model.latent_sampler is not None and model.latent_sampler.kind == chosen.kind


@pytest.mark.slow
def test_gaussian_sampler_is_fitted_on_the_inference_mode_posterior_of_the_training_set(run):
    out, config, _ = run
    _, model = load_run(out)
    data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=config.model.value_range,
                         batch_size=config.train.batch_size, seed=config.train.seed)
    means, log_vars = [], []
    for x in data.train:
        m, lv = model.encode(x)
        means.append(np.asarray(m, np.float64))
        log_vars.append(np.asarray(lv, np.float64))
    mu, var = np.concatenate(means), np.exp(np.concatenate(log_vars))
    gaussian = LatentSampler.load(out / "samplers" / "gaussian.json")
    assert gaussian.fitted_on == {"examples": data.num_train, "mode": "inference"} and len(mu) == data.num_train
    # the training order differs (shuffled), the set does not: float32 codes summed in float64
    tol = 1e-5 * (1 + np.abs(mu).max())
    np.testing.assert_allclose(gaussian.means[0], mu.mean(axis=0), atol=tol)
    np.testing.assert_allclose(gaussian.covariances[0], np.cov(mu.T, bias=True) + np.diag(var.mean(axis=0)),
                               atol=10 * tol * (1 + np.abs(mu).max()))


def test_load_run_samples_from_the_stored_sampler(run):
    out, _, _ = run
    _, model = load_run(out)
    chosen = LatentSampler.load(out / "sampler.json")
    np.testing.assert_array_equal(np.asarray(model.sample_latents(5, seed=4)), chosen.sample(5, seed=4))
    np.testing.assert_array_equal(np.asarray(model.sample(5, seed=4)),
                                  np.asarray(model.decode(chosen.sample(5, seed=4))))
    _, prior_model = load_run(out, sampler="prior")
    eps, _ = draw_noise(4, 5, 8)
    np.testing.assert_array_equal(np.asarray(prior_model.sample_latents(5, seed=4)), eps)


@pytest.mark.slow
def test_sample_command_with_each_sampler_and_a_run_without_samplers(run, tmp_path, capsys):
    out, _, _ = run
    for kind in ("prior", "gaussian", "gmm"):
        png = tmp_path / f"{kind}.png"
        assert main(["sample", str(out), "--n", "4", "--sampler", kind, "--out", str(png)]) == 0
        with Image.open(png) as image:
            assert image.size == (2 * 16, 2 * 16)
    old = tmp_path / "old-run"
    shutil.copytree(out, old)
    shutil.rmtree(old / "samplers")
    (old / "sampler.json").unlink()
    _, model = load_run(old)
    assert model.get_latent_sampler().kind == "prior"  # runs from before samplers decode N(0, I)
    with pytest.raises(ArtifactError, match="no 'gmm' sampler"):
        load_run(old, sampler="gmm")
    capsys.readouterr()
    assert main(["sample", str(old), "--sampler", "gmm", "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "keras-vae sample: error:" in err and "--sampler prior" in err and "Traceback" not in err
