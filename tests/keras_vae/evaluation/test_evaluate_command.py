"""keras-vae evaluate and the end-of-training evaluation on tiny runs: files, sections, errors, VAEGAN."""
import json

import numpy as np
import pytest

from keras_vae.cli import main
from keras_vae.evaluation.report import (DEFINITIONS, DRAW_SPREAD, END_OF_TRAINING_DRAWS,
                                         END_OF_TRAINING_SAMPLES, NO_LIKELIHOOD_VAEGAN)
from tests.support.runs import copy_run


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def vae_run(trained_vae_run, tmp_path_factory):
    """The session's tiny-vae run, copied: evaluate writes into the run folder."""
    return copy_run(trained_vae_run, tmp_path_factory.mktemp("vae") / "run")


@pytest.fixture(scope="module")
def vaegan_run(trained_vaegan_run, tmp_path_factory):
    """The session's tiny VAEGAN run, copied: evaluate writes into it and caches its feature network there."""
    return copy_run(trained_vaegan_run, tmp_path_factory.mktemp("vaegan") / "run")


def test_end_of_training_evaluation_in_metrics_json_and_tensorboard(vae_run):
    metrics = json.loads((vae_run / "metrics.json").read_text())
    evaluation = metrics["evaluation"]
    assert set(evaluation["sections"]) == {"sample_quality", "reconstruction", "latent"}  # likelihood is in "final"
    quality = evaluation["sections"]["sample_quality"]
    fd = quality["frechet_distance"]
    assert fd["n"] == END_OF_TRAINING_SAMPLES and fd["value"] > 0 and "NOT Inception FID" in fd["definition"]
    for name in DRAW_SPREAD:  # means over the draws, each with its spread across them
        assert quality[f"{name}_std"]["n"] == END_OF_TRAINING_DRAWS and quality[f"{name}_std"]["value"] >= 0
    assert quality["intensity"]["value"] > 0
    assert any(f"{END_OF_TRAINING_DRAWS} independent draws of {END_OF_TRAINING_SAMPLES} samples" in note
               for note in evaluation["notes"])
    recon = evaluation["sections"]["reconstruction"]
    # PSNR is averaged per image: -10 log10 is convex, so by Jensen it is at least the PSNR of the mean MSE
    assert recon["psnr"]["value"] >= 10 * np.log10(1 / recon["mse"]["value"]) - 1e-9
    assert 0 <= recon["mae"]["value"] <= 1 and recon["mae"]["n"] == 500
    assert any((vae_run / "logs" / "evaluation").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_evaluate_writes_json_and_markdown_with_definitions_and_sizes(vae_run, capsys):
    code, out, err = cli(capsys, "evaluate", str(vae_run), "--samples", "40", "--iwae-samples", "4", "--examples", "16")
    assert code == 0, err
    result = json.loads((vae_run / "evaluation.json").read_text())
    sections = result["sections"]
    assert sections["sample_quality"]["precision"]["n"] == 40 and sections["sample_quality"]["recall"]["n"] == 500
    likelihood = sections["likelihood"]
    assert likelihood["nll"]["iwae_k"] == 4 and likelihood["nll"]["n"] == 16
    assert likelihood["nll"]["value"] > 0 and likelihood["elbo"]["value"] < 0
    assert sections["latent"]["active_units"]["of"] == 4
    markdown = (vae_run / "evaluation.md").read_text()
    for section in sections.values():
        for name, item in section.items():
            assert item["definition"] == DEFINITIONS[name] and f"| {name} |" in markdown
    assert "K = 5000" in markdown  # the standard K is named when another is used
    assert "sample_quality/frechet_distance" in out


def test_sampler_choice_uses_the_runs_stored_candidates(vae_run, capsys):
    code, _, err = cli(capsys, "evaluate", str(vae_run), "--sampler", "gaussian", "--samples", "10",
                       "--no-likelihood", "--out", str(vae_run / "gaussian.json"))
    assert code == 0, err
    assert json.loads((vae_run / "gaussian.json").read_text())["sampler"] == "gaussian sampler (--sampler gaussian)"
    (vae_run / "samplers" / "gmm.json").unlink()
    code, _, err = cli(capsys, "evaluate", str(vae_run), "--sampler", "gmm", "--samples", "10")
    assert code == 2 and "has no 'gmm' sampler" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "evaluate", str(vae_run), "--samples", "0")
    assert code == 2 and "--samples must be >= 1" in err


@pytest.mark.slow
def test_vaegan_report_explains_missing_likelihood_and_caches_its_feature_network(vaegan_run, capsys):
    metrics = json.loads((vaegan_run / "metrics.json").read_text())
    # 16x16 images: the shipped MNIST network does not fit and training does not train one
    assert "frechet_distance" not in metrics["evaluation"]["sections"]["sample_quality"]
    code, _, err = cli(capsys, "evaluate", str(vaegan_run), "--samples", "20")
    assert code == 0, err
    result = json.loads((vaegan_run / "evaluation.json").read_text())
    assert "likelihood" not in result["sections"] and NO_LIKELIHOOD_VAEGAN in result["notes"]
    assert "frechet_distance" in result["sections"]["sample_quality"]
    cached = vaegan_run / "features" / "feature_net.weights.h5"
    info = json.loads((vaegan_run / "features" / "feature_net.json").read_text())
    assert cached.is_file() and info["task"] == "rotation" and info["image_shape"] == [16, 16, 1]
    stamp = cached.stat().st_mtime_ns
    assert cli(capsys, "evaluate", str(vaegan_run), "--samples", "20")[0] == 0
    assert cached.stat().st_mtime_ns == stamp  # reused, not re-trained
    epoch = metrics["epochs"][0]["train"]
    assert 0 <= epoch["reconstruction"] <= 1  # logged on the [0, 1] scale


@pytest.mark.slow
def test_draws_report_the_mean_and_spread_of_independent_single_draw_evaluations(vae_run, capsys):
    singles = []
    for seed in (3, 4, 5):
        out = vae_run / f"single{seed}.json"
        code, _, err = cli(capsys, "evaluate", str(vae_run), "--samples", "40", "--no-likelihood", "--seed", str(seed),
                           "--out", str(out))
        assert code == 0, err
        singles.append(json.loads(out.read_text())["sections"]["sample_quality"])
    code, _, err = cli(capsys, "evaluate", str(vae_run), "--samples", "40", "--no-likelihood", "--seed", "3",
                       "--draws", "3", "--out", str(vae_run / "draws.json"))
    assert code == 0, err
    result = json.loads((vae_run / "draws.json").read_text())
    quality = result["sections"]["sample_quality"]
    fds = [s["frechet_distance"]["value"] for s in singles]
    assert len(set(fds)) == 3  # different seeds, different samples
    assert quality["frechet_distance"]["value"] == pytest.approx(np.mean(fds), rel=1e-9)
    assert quality["frechet_distance_std"]["value"] == pytest.approx(np.std(fds, ddof=1), rel=1e-9)
    assert quality["frechet_distance_std"]["n"] == 3 and quality["frechet_distance"]["n"] == 40
    for name in ("kid", "precision", "recall", "sharpness", "intensity"):
        assert quality[name]["value"] == pytest.approx(np.mean([s[name]["value"] for s in singles]), rel=1e-9)
    for name in ("precision", "recall", "intensity"):
        assert quality[f"{name}_std"]["value"] == pytest.approx(np.std([s[name]["value"] for s in singles], ddof=1),
                                                                rel=1e-9, abs=1e-12)
    assert not any(name.endswith("_std") and name != "kid_std" for name in singles[0])
    assert any("3 independent draws of 40 samples (seeds 3-5)" in note for note in result["notes"])
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(vae_run), "--draws", "0"])
    assert exit_info.value.code == 2 and "--draws must be an integer in [1, 100]" in capsys.readouterr().err
