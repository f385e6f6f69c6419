"""Every bad input is one line on stderr with exit status 2, before any work: no traceback, nothing
accepted silently. These are the classes of the hostile probe, each with a few members."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from keras_vae.cli import main
from keras_vae.choices import ACTIVATIONS
from keras_vae.config import RunConfig, load_config_file, merge
from keras_vae.errors import ArtifactError, ConfigError
from keras_vae.utils.validation import MESSAGE_LIMIT, SEED_MAX, check_output_dir, check_output_file, short


def run_cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line(code, err, *fragments):
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert len(err) <= MESSAGE_LIMIT + 100, len(err)
    for fragment in fragments:
        assert fragment in err, (fragment, err)


@pytest.mark.parametrize("setting, fragment", [
    ("model.activation=bogus", "unknown activation 'bogus'"),
    ("model.activation=softmax", "unknown activation 'softmax'"),  # not element-wise
    ("model.hidden_units=0", "hidden_units (0,) must hold sizes in [1, 65536], got 0"),
    ("model.hidden_units=32,-4", "got -4"),
    ("model.conv_filters=0", "conv_filters"),
    ("model.latent_dim=100000000", "latent_dim must be in [1, 65536]"),
    ("model.latent_dim=1e30", "is not a valid int"),
    ("model.latent_dim=2.5", "is not a valid int"),
    ("train.seed=-1", "seed must be an integer in [0, 4294967295]"),
    ("train.seed=9223372036854775809", "seed"),
    ("train.beta_1=5", "beta_1 must be in [0, 1), got 5.0"),
    ("train.disc_beta_1=1", "disc_beta_1 must be in [0, 1)"),
    ("train.learning_rate=inf", "is not a valid float (a finite number)"),
    ("train.learning_rate=nan", "is not a valid float (a finite number)"),
    ("loss.beta=-inf", "is not a valid float"),
    ("loss.kl_weight=1e999", "is not a valid float"),
    ("train.batch_size=10000000", "batch_size must be in [1, 65536]"),
    ("train.jit_compile=maybe", "is not a valid bool (true or false)"),
    ("train.iwae_samples=1000000000", "iwae_samples must be in [1, 1000000]"),
    ("loss.num_samples=1000000000", "num_samples must be in [1, 10000]"),
    ("model.hidden_units=" + ",".join(["8"] * 65), "hidden_units lists 65 layers, more than 64"),
    ("model.fixed_log_variance=1e30", "fixed_log_variance must be in [-30, 30]"),
    ("model.num_stages=1000000000000000000", "num_stages must be an integer >= 1 and <= 16"),
])
def test_bad_settings(capsys, setting, fragment):
    code, out, err = run_cli(capsys, "train", "--preset", "tiny-vae", "--set", setting, "--out", "/nonexistent")
    assert_one_line(code, err, fragment)
    assert out == ""


@pytest.mark.parametrize("argv, fragment", [
    (["--seed", "-1"], "seed must be an integer in [0, 4294967295]"),
    (["--seed", str(2 ** 63 + 5)], "seed must be an integer in [0, 4294967295]"),
    (["--seed", "x"], "seed must be an integer"),
    (["--learning-rate", "nan"], "must be a finite number > 0"),
    (["--data", "tfds:../../etc"], "'../../etc' is not a tensorflow-datasets name"),
    (["--data", "tfds:/etc/passwd"], "is not a tensorflow-datasets name"),
    (["--data", "tfds:mnist/../../x"], "is not a tensorflow-datasets name"),
])
def test_bad_train_flags(capsys, argv, fragment):
    code, _, err = run_cli(capsys, "train", "--preset", "tiny-vae", *argv, "--out", "/nonexistent")
    assert_one_line(code, err, fragment)


def test_seed_bounds_are_numpys():
    import numpy as np

    np.random.seed(SEED_MAX)  # the largest accepted seed works where keras.utils.set_random_seed uses it
    with pytest.raises(ValueError):
        np.random.seed(SEED_MAX + 1)
    assert merge(RunConfig(), {"train": {"seed": SEED_MAX}}).train.seed == SEED_MAX


def test_activations_are_keras_activations():
    import keras

    for name in ACTIVATIONS:
        assert callable(keras.activations.get(name))


def test_non_utf8_config(capsys, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"train:\n  epochs: 2\n  # caf\xe9\xff\n")
    code, _, err = run_cli(capsys, "train", "--config", path)
    assert_one_line(code, err, "is not UTF-8 text (byte ", "save it as UTF-8")


@pytest.mark.parametrize("text, fragment", [
    ("preset: [tiny-vae]\n", "unknown preset ['tiny-vae']"),
    ("preset: {a: 1}\n", "unknown preset {'a': 1}"),
    ("train: {epochs: yes}\n", "epochs=True is not a valid int"),
    ("train: [1, 2]\n", "section 'train' must be a mapping of options"),
    ("- 1\n- 2\n", "must hold a mapping of sections, got [1, 2]"),
    ("model: {hidden_units: {a: 1}}\n", "hidden_units={'a': 1} is not a valid tuple"),
    ("data: {source: 7}\n", "source=7 is not a valid str (a string)"),
])
def test_config_file_values_of_the_wrong_kind(capsys, tmp_path, text, fragment):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    code, _, err = run_cli(capsys, "train", "--config", path)
    assert_one_line(code, err, fragment)


@pytest.mark.parametrize("path, fragment", [("/dev/zero", "is not a regular file"), (".", "is a folder")])
def test_config_that_is_not_a_file(capsys, path, fragment):
    code, _, err = run_cli(capsys, "train", "--config", path)
    assert_one_line(code, err, fragment)


def test_yaml_anchor_bomb_is_a_short_error(capsys, tmp_path):
    """Nested anchors: each level repeats the one below 9 times (9^9 leaves if echoed in full)."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{cur}: &{cur} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]")
    lines.append("model: {hidden_units: *i}")
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert path.stat().st_size < 1000
    code, _, err = run_cli(capsys, "train", "--config", path)
    assert_one_line(code, err)
    assert len(err) < 400, len(err)
    with pytest.raises(ConfigError) as exc:
        merge(RunConfig(), {"model": load_config_file(path)["i"]})  # a section of the wrong kind
    assert len(str(exc.value)) < 300


def test_short_cuts_long_and_recursive_values():
    nested: list = []
    nested.append(nested)
    assert short(nested).startswith("[[") and len(short(nested)) <= 80
    assert short(list(range(10 ** 5))) == "[0, 1, 2, 3, 4, 5, 6, 7, ...]"
    assert len(short("x" * 10 ** 5)) == 80 and short("x" * 10 ** 5).endswith("...")


def test_out_is_a_file(capsys, tmp_path):
    a_file = tmp_path / "run.txt"
    a_file.write_text("keep me")
    code, _, err = run_cli(capsys, "train", "--preset", "tiny-vae", "--out", a_file)
    assert_one_line(code, err, "is a file, not a folder")
    code, _, err = run_cli(capsys, "train", "--preset", "tiny-vae", "--out", a_file / "sub")
    assert_one_line(code, err, "is a file, so no folder can be made there")
    assert a_file.read_text() == "keep me"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("out", ["/proc", "/proc/keras-vae-run"])
@pytest.mark.parametrize("command", [["train", "--preset", "tiny-vae"], ["export", "/nonexistent-run"],
                                     ["ablate", "--preset", "tiny", "--steps", "1"]])
def test_out_in_proc(capsys, out, command):
    code, _, err = run_cli(capsys, *command, "--out", out)
    assert_one_line(code, err, "cannot create files in '/proc'")


def test_out_in_a_read_only_folder(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(ArtifactError, match="cannot create files in"):
            check_output_dir(ro / "run")
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("command", ["sample", "evaluate"])
def test_out_is_a_folder(capsys, tmp_path, command):
    code, _, err = run_cli(capsys, command, tmp_path / "no-run", "--out", tmp_path)
    assert_one_line(code, err, "is a folder: pass a file name")
    assert list(tmp_path.iterdir()) == []  # no probe file left behind


@pytest.mark.parametrize("argv, fragment", [
    (["--n", "1000000000"], "--n must be >= 1 and <= 10000"),
    (["--n", "-3"], "--n must be >= 1"),
    (["--temperature", "nan"], "must be a finite number > 0, got 'nan'"),
    (["--temperature", "inf"], "must be a finite number > 0, got 'inf'"),
    (["--temperature", "-1"], "must be a finite number > 0"),
    (["--seed", "-1"], "seed must be an integer in [0, 4294967295]"),
    (["--out", "grid.gif"], "unknown image type '.gif': use a name ending in .jpeg, .jpg, .npz, .png"),
    (["--out", "grid"], "unknown image type '(no extension)'"),
])
def test_bad_sample_flags(capsys, tmp_path, argv, fragment):
    code, _, err = run_cli(capsys, "sample", tmp_path / "no-run", *argv)
    assert_one_line(code, err, fragment)


@pytest.mark.parametrize("argv, fragment", [
    (["--iwae-samples", "0"], "--iwae-samples must be an integer in [1, 1000000], got 0"),
    (["--iwae-samples", "1000000000"], "--iwae-samples must be an integer in [1, 1000000]"),
    (["--seed", "-2"], "seed must be an integer in [0, 4294967295]"),
])
def test_bad_evaluate_flags(capsys, tmp_path, argv, fragment):
    code, _, err = run_cli(capsys, "evaluate", tmp_path / "no-run", *argv)
    assert_one_line(code, err, fragment)


def test_check_output_file_accepts_a_new_file_in_an_existing_folder(tmp_path):
    assert check_output_file(tmp_path / "a.JPG", suffixes={".jpg": "JPEG"}) == tmp_path / "a.JPG"
    assert list(tmp_path.iterdir()) == []
