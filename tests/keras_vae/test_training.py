"""End to end on the embedded MNIST digits: the CLI run folder, ELBO improvement, data errors. (An interrupted
run resuming where it stopped: test_run_lifecycle's atomic-checkpoint test and test_weight_averaging.)"""
import json

import keras
import numpy as np
import pytest
from PIL import Image

from keras_vae.cli import main
from keras_vae.config import merge
from keras_vae.data import make_datasets
from keras_vae.errors import ArtifactError
from keras_vae.models import build_model
from keras_vae.config.presets import get_preset
from keras_vae.training.loop import train
from tests.support.runs import copy_run

RUN_FILES = ("model.keras", "config.json", "metrics.json", "sampler.json", "samples.png", "reconstructions.png",
             "latent.png", "interpolations.png", "traversals.png")


def cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cli_run(trained_vae_run, tmp_path_factory):
    """The session's `keras-vae train --preset tiny-vae --seed 3` run folder, copied (evaluate writes into it)."""
    return copy_run(trained_vae_run, tmp_path_factory.mktemp("run") / "run")


def test_train_writes_the_whole_run_folder(cli_run):
    for name in RUN_FILES:
        assert (cli_run / name).is_file(), name
    assert any((cli_run / "logs").rglob("events.out.tfevents.*"))
    config = json.loads((cli_run / "config.json").read_text())
    assert config["preset"] == "tiny-vae" and config["train"]["seed"] == 3
    metrics = json.loads((cli_run / "metrics.json").read_text())
    epoch = metrics["epochs"][0]
    for key in ("loss", "elbo", "kl", "reconstruction"):
        assert np.isfinite(epoch["train"][key]) and np.isfinite(epoch["validation"][key])
    assert epoch["diagnostics"]["latent_dim"] == 4
    final = metrics["final"]["validation"]
    assert final["iwae_k"] == 16 and final["examples"] == 64
    assert final["nll"] == pytest.approx(-final["log_likelihood"])
    assert final["log_likelihood"] >= final["elbo"] - 1.0  # IWAE(K=16) bound vs single-sample ELBO
    with Image.open(cli_run / "samples.png") as image:
        assert image.size[0] > 100


def test_sample_and_evaluate_commands(cli_run, tmp_path, capsys):
    png = tmp_path / "grid.png"
    code, out, _ = cli(capsys, "sample", str(cli_run), "--n", "9", "--seed", "1", "--out", str(png))
    assert code == 0
    with Image.open(png) as image:
        assert image.size == (3 * 28, 3 * 28)  # 3x3 grid, as from the ONNX decoder
    code, out, _ = cli(capsys, "evaluate", str(cli_run), "--iwae-samples", "8", "--examples", "32")
    assert code == 0
    result = json.loads((cli_run / "evaluation.json").read_text())
    likelihood = result["sections"]["likelihood"]
    assert likelihood["nll"]["iwae_k"] == 8 and likelihood["nll"]["n"] == 32
    assert likelihood["nll"]["value"] > 0


def test_rerun_into_a_finished_run_needs_force(cli_run):
    with pytest.raises(ArtifactError, match="already holds a finished run.*--force"):
        train(get_preset("tiny-vae"), cli_run)


@pytest.mark.slow
def test_short_training_improves_validation_elbo(tmp_path):
    config = merge(get_preset("tiny-vae"), {"train": {"epochs": 2, "steps_per_epoch": 30, "batch_size": 64},
                                            "data": {"max_examples": 2000}})
    data = make_datasets(config.data, image_shape=config.model.image_shape, value_range=(0.0, 1.0),
                         batch_size=64, seed=0)
    keras.utils.set_random_seed(0)
    untrained = build_model(config)
    untrained.compile_for_training(config.train)
    before = untrained.evaluate(data.validation, verbose=0, return_dict=True)["elbo"]
    result = train(config, tmp_path / "run", verbose=0)
    after = result.metrics["epochs"][-1]["validation"]["elbo"]
    assert after > before + 100.0, (before, after)  # from ~-540 nats (random) to well below -300
    assert result.model.latent_sampler is not None  # the returned model samples from its fitted sampler


def test_train_takes_a_preset_name_and_names_what_it_takes_otherwise(tmp_path):
    from keras_vae.errors import ConfigError
    from keras_vae.training.loop import _run_config

    assert _run_config("tiny-vae") == get_preset("tiny-vae")
    config = merge(get_preset("quick"), {"model": {"latent_dim": 2}})
    assert _run_config(config) is config
    with pytest.raises(ConfigError, match=r"^unknown preset 'nope': choose .*'quick'"):
        train("nope", tmp_path / "run")
    with pytest.raises(ConfigError, match=r"^train\(config, out_dir\): config must be a RunConfig or a preset's "
                                          r"name, got dict: e\.g\. keras_vae\.train\('quick', 'runs/quick'\)"):
        train({"model": {"latent_dim": 2}}, tmp_path / "run")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("spec, message", [
    ("folder:{tmp}/missing", "does not exist"),
    ("folder:{tmp}/empty", "no images found"),
    ("tfds:mnist", "not prepared"),
])
def test_data_errors_from_the_cli(tmp_path, capsys, spec, message):
    (tmp_path / "empty").mkdir()
    code, _, err = cli(capsys, "train", "--preset", "tiny-vae", "--out", str(tmp_path / "run"),
                       "--data", spec.format(tmp=tmp_path), "--data-dir", str(tmp_path / "tfds"))
    assert code == 2, err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # a failed start leaves no run folder behind
