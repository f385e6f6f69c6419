"""Configuration: presets, files, overrides and their errors."""
import json

import pytest

from keras_vae.config import RunConfig, load_config_file, merge
from keras_vae.errors import ConfigError
from keras_vae.config.presets import get_preset, preset_names


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_validates_and_roundtrips_through_json(name):
    config = get_preset(name)
    assert config.preset == name
    again = RunConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def test_reference_values_of_the_paper_preset():
    config = get_preset("paper-celeba-hq-256")
    assert config.model.image_shape == (256, 256, 3) and config.model.latent_dim == 512
    assert config.loss.kl == "population" and config.loss.variance_weight == 0.1
    assert config.loss.reconstruction_weight == 5000 and config.loss.adversarial_weight == 100
    assert config.train.batch_size == 10 and config.train.learning_rate == 1e-4 and config.train.beta_1 == 0.5


def test_overrides_coerce_strings_and_lists():
    config = merge(get_preset("tiny-vae"), {"model": {"hidden_units": "64,32", "latent_dim": "3"},
                                            "train": {"jit_compile": "true"}})
    assert config.model.hidden_units == (64, 32) and config.model.latent_dim == 3
    assert config.train.jit_compile is True


@pytest.mark.parametrize("overrides, message", [
    ({"model": {"latnt_dim": 3}}, "unknown model option 'latnt_dim'.*'latent_dim'"),
    ({"model": {"latent_dimm": 3}}, r"^unknown model option 'latent_dimm': did you mean 'latent_dim'\? \(choose "
                                    r"'activation', .*'sync_batch_norm'\)$"),
    ({"model": {"epochs": 3}}, r"^unknown model option 'epochs': epochs is an option of section train "
                               r"\(train\.epochs\)$"),
    ({"train": {"latent_dim": 3}}, r"^unknown train option 'latent_dim': latent_dim is an option of section model "
                                   r"\(model\.latent_dim\)$"),
    ({"model": {"zzz": 3}}, r"^unknown model option 'zzz': choose 'activation', "),
    ({"modle": {}}, "unknown configuration section 'modle'"),
    ({"model": {"likelihood": "poisson"}}, "unknown likelihood 'poisson': choose 'bernoulli'"),
    ({"model": {"image_shape": (28, 28, 2)}}, "2 channels: choose 1"),
    ({"model": {"image_shape": (28, 28)}}, "height, width, channels"),
    ({"train": {"epochs": 0}}, "epochs must be > 0"),
    ({"train": {"batch_size": "many"}}, "batch_size='many' is not a valid"),
    ({"data": {"source": "s3:bucket"}}, r"^unknown data source 's3:bucket': use 'embedded', 'tfds:NAME', "
                                        r"'folder:PATH' or 'npy:PATH'$"),
    ({"data": {"source": "mnist"}}, r"^unknown data source 'mnist': use .*; for a TensorFlow Datasets name, write "
                                    r"'tfds:mnist' \('embedded' is the 5,000 MNIST digits shipped offline\)$"),
    ({"data": {"source": "data/faces"}}, r"; for a path, write 'folder:data/faces' \(image files\) or "
                                         r"'npy:data/faces' \(a \.npy/\.npz array\)$"),
    ({"data": {"source": "digits.npz"}}, r"; for an array file, write 'npy:digits\.npz'$"),
    ({"loss": {"kl": "fancy"}}, "choose 'standard' or 'population'"),
])
def test_bad_values_name_the_problem_and_the_choices(overrides, message):
    with pytest.raises(ConfigError, match=message):
        merge(get_preset("tiny-vae"), overrides)


def test_unknown_preset_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="unknown preset 'nope': choose .*'mnist-mlp'"):
        get_preset("nope")


def test_config_files_yaml_json_and_errors(tmp_path):
    (tmp_path / "c.yaml").write_text("preset: tiny-vae\nmodel:\n  latent_dim: 5\n")
    (tmp_path / "c.json").write_text(json.dumps({"train": {"epochs": 3}}))
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    assert load_config_file(tmp_path / "c.yaml") == {"preset": "tiny-vae", "model": {"latent_dim": 5}}
    assert merge(get_preset("tiny-vae"), load_config_file(tmp_path / "c.json")).train.epochs == 3
    with pytest.raises(ConfigError, match="cannot parse configuration file"):
        load_config_file(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_config_file(tmp_path / "missing.yaml")


def test_run_files_are_written_atomically_and_readable(tmp_path):
    import os
    import stat

    from keras_vae.utils.files import read_json, write_json

    write_json(tmp_path / "a.json", {"x": 1})
    write_json(tmp_path / "a.json", {"x": 2})  # replaced in one rename
    assert read_json(tmp_path / "a.json") == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~umask
