"""Class samplers (keras_vae.sampling.classes): the per-class fit against NumPy on the tiny run's labelled codes,
the samplers/classes.json round trip, `keras-vae sample RUN --class K` on an unconditional run and the refusal
for a run whose data has no labels."""
from __future__ import annotations

import json

import numpy as np
import pytest

from keras_vae.cli import main
from keras_vae.errors import ArtifactError, ConfigError
from tests.support.runs import copy_run


@pytest.fixture(scope="module")
def tiny_codes(vae_run):
    from keras_vae.runs.folder import load_run
    from keras_vae.training.class_samplers import class_codes

    config, model = load_run(vae_run)
    return class_codes(config, model)


def test_per_class_gaussians_match_numpy(tiny_codes):
    from keras_vae.sampling.classes import fit_class_samplers_from_codes

    (means, variances, labels), (held_out, held_out_labels) = tiny_codes
    assert sorted(np.unique(labels)) == list(range(10)) and len(held_out) == len(held_out_labels) > 0
    samplers = fit_class_samplers_from_codes(means, variances, labels, held_out, held_out_labels, components=())
    assert sorted(samplers) == list(range(10))
    for c, sampler in samplers.items():
        mu, var = means[labels == c], variances[labels == c]
        centred = mu - mu.mean(axis=0)
        expected_cov = centred.T @ centred / len(mu) + np.diag(var.mean(axis=0))
        assert sampler.kind == "gaussian" and sampler.fitted_on["examples"] == len(mu) and sampler.fitted_on["class"] == c
        np.testing.assert_allclose(sampler.means[0], mu.mean(axis=0), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(sampler.covariances[0], expected_cov, rtol=1e-9, atol=1e-12)
        # held-out score of the class's own codes, recorded by the choice
        score = np.mean(sampler.log_prob(held_out[held_out_labels == c]))
        np.testing.assert_allclose(sampler.selection["candidates"]["gaussian"], score, rtol=1e-12)


def test_mixture_candidate_is_chosen_only_when_it_scores_higher(tiny_codes):
    from keras_vae.sampling.classes import fit_class_samplers_from_codes

    (means, variances, labels), (held_out, held_out_labels) = tiny_codes
    samplers = fit_class_samplers_from_codes(means, variances, labels, held_out, held_out_labels,
                                             components=(1, 2), shrinkage=(0.0, 0.1))
    for c, sampler in samplers.items():
        scores = sampler.selection["candidates"]
        assert set(scores) == {"gaussian", "gmm"} and sampler.kind == max(scores, key=scores.get)
        np.testing.assert_allclose(np.mean(sampler.log_prob(held_out[held_out_labels == c])), scores[sampler.kind],
                                   rtol=1e-12)


def test_fit_class_samplers_file_round_trip(vae_run, tmp_path):
    from keras_vae.sampling.classes import CLASSES_FILE, load_class_sampler, load_class_samplers
    from keras_vae.training.class_samplers import fit_class_samplers

    run = copy_run(vae_run, tmp_path / "run")
    fitted = fit_class_samplers(run, components=(1, 2))
    assert (run / CLASSES_FILE).is_file() and sorted(fitted) == list(range(10))
    assert not list((run / "samplers").glob("*.tmp*"))  # atomic write leaves no temp file
    loaded = load_class_samplers(run, latent_dim=4)
    for c, sampler in fitted.items():
        back = load_class_sampler(run, c, latent_dim=4)
        assert back.to_dict() == sampler.to_dict() == loaded[c].to_dict()
        np.testing.assert_array_equal(back.sample(5, seed=2), sampler.sample(5, seed=2))
    with pytest.raises(ConfigError, match="cover classes"):
        load_class_sampler(run, 11)
    with pytest.raises(ArtifactError, match="latent dimension 4 but the model has 8"):
        load_class_samplers(run, latent_dim=8)
    data = json.loads((run / CLASSES_FILE).read_text())
    data["version"] = 9
    (run / CLASSES_FILE).write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="version 9"):
        load_class_samplers(run)
    with pytest.raises(ArtifactError, match="has no class samplers"):
        load_class_samplers(tmp_path)


def test_sample_class_on_an_unconditional_run_decodes_that_class_latents(vae_run, tmp_path, capsys):
    from keras_vae.runs.folder import load_run
    from keras_vae.sampling.classes import load_class_sampler
    from keras_vae.utils.images import to_uint8

    run = copy_run(vae_run, tmp_path / "run")
    out = tmp_path / "s.npz"
    assert main(["sample", str(run), "--class", "3", "--n", "6", "--seed", "5", "--out", str(out)]) == 0
    assert "fitting one latent sampler per class" in capsys.readouterr().out
    _, model = load_run(run)
    z = load_class_sampler(run, 3, model.latent_dim).sample(6, seed=5)
    expected = to_uint8(np.asarray(model.to_unit(model.decode(z))))
    with np.load(out) as saved:
        np.testing.assert_array_equal(saved["images"], expected)
        assert str(saved["sampler"]) == "class-3" and int(saved["seed"]) == 5
    # the second call reuses samplers/classes.json: the same seed gives the same images, no refit
    again = tmp_path / "again.npz"
    assert main(["sample", str(run), "--class", "3", "--n", "6", "--seed", "5", "--out", str(again)]) == 0
    assert "fitting" not in capsys.readouterr().out
    with np.load(again) as saved:
        np.testing.assert_array_equal(saved["images"], expected)
    assert main(["sample", str(run), "--class", "3", "--sampler", "prior", "--out", str(tmp_path / "x.png")]) == 2
    assert "drop --sampler prior" in capsys.readouterr().err


def test_sample_class_refused_for_a_run_without_labels(vae_run, tmp_path, capsys):
    from keras_vae.sampling.classes import CLASSES_FILE

    run = copy_run(vae_run, tmp_path / "run")
    images = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    np.save(tmp_path / "digits.npy", images)
    config = json.loads((run / "config.json").read_text())
    config["data"]["source"] = f"npy:{tmp_path / 'digits.npy'}"
    (run / "config.json").write_text(json.dumps(config))
    assert main(["sample", str(run), "--class", "1", "--out", str(tmp_path / "s.png")]) == 2
    err = capsys.readouterr().err
    assert "has no labels" in err and "drop --class" in err and len(err.strip().splitlines()) == 1
    assert not (run / CLASSES_FILE).exists() and not (tmp_path / "s.png").exists()
