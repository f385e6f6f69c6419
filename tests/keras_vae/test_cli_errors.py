"""CLI contract without training: help texts, and bad input as one clear line with exit status 2."""
import subprocess
import sys

import pytest

from keras_vae.cli import build_parser, main
from keras_vae.utils.validation import short


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_every_subcommand_documents_its_options_and_defaults():
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    assert {"train", "evaluate", "sample"} <= set(subcommands)
    train_help = subcommands["train"].format_help()
    for option in ("--model", "--preset", "--data", "--epochs", "--steps-per-epoch", "--batch-size",
                   "--latent-dim", "--seed", "--out", "--config"):
        assert option in train_help
    assert "default: 64" in subcommands["sample"].format_help()
    quick = " ".join(train_help.split("--quick ", 1)[1].split("--conditional", 1)[0].split())
    assert "a first run of the classic VAE" in quick and "--model vaegan --epochs N" in quick  # not the VAEGAN's


def test_help_runs_as_a_console_command_without_tensorflow():
    code = ("import sys; from keras_vae.cli import build_parser; build_parser(); "
            "assert 'tensorflow' not in sys.modules, 'help imported TF'")
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "keras_vae", "train", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--steps-per-epoch" in out.stdout


@pytest.mark.parametrize("argv, message", [
    (["train", "--preset", "nope"], "unknown preset 'nope'"),
    (["train", "--model", "vaegan", "--preset", "tiny-vae"], "preset 'tiny-vae' is a 'vae' model"),
    (["train", "--model", "vae", "--preset", "mnist-28"],
     "pick a 'vae' preset: 'mnist-conv', 'mnist-mlp', 'mnist-mlp-conditional', 'quick' or 'tiny-vae'"),
    (["train", "--model", "vaegan", "--quick"], "--quick is the classic VAE's short run and has no 'vaegan' "
                                                "version: drop --quick for the default 'vaegan' job (preset mnist-28)"),
    (["train", "--set", "model.latnt=3"], "unknown model option 'latnt'"),
    (["train", "--set", "oops"], "must look like SECTION.FIELD=VALUE"),
    (["train", "--config", "/nonexistent/c.yaml"], "configuration file '/nonexistent/c.yaml' does not exist"),
    (["train", "--data", "ftp:x"], "unknown data source 'ftp:x'"),
    (["train", "--epochs", "0"], "epochs must be > 0"),
    (["evaluate", "/nonexistent/run"], "run folder '/nonexistent/run' does not exist"),
    (["sample", "/nonexistent/run", "--n", "0"], "--n must be >= 1"),
    (["sample", "/nonexistent/run"], "'/nonexistent/run' does not exist: pass a run folder (keras-vae train), "
                                     "an export folder (keras-vae export) or an export's decoder.onnx"),
    (["sample", "/nonexistent/exp/decoder.onx"], "'/nonexistent/exp/decoder.onx' does not exist: pass a run folder"),
])
def test_bad_input_is_one_line_with_exit_2(capsys, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unknown_option_is_a_usage_error(capsys):
    code, _, err = run_cli(capsys, "train", "--epoch", "3", "--bogus")
    assert code == 2 and "unrecognized arguments: --bogus" in err
    assert "did you mean" not in err  # nothing close to --bogus


@pytest.mark.parametrize("argv, line", [
    (["train", "--quik"], "keras-vae train: error: unrecognized arguments: --quik (did you mean --quick?) "
                          "(see 'keras-vae train --help')"),
    (["sample", "runs/x", "--seeds", "3", "--tempreature", "2"],
     "keras-vae sample: error: unrecognized arguments: --seeds 3 --tempreature 2 "
     "(did you mean --seed or --temperature?) (see 'keras-vae sample --help')"),
    (["train", "--model", "vaegn"], "keras-vae train: error: argument --model: invalid choice: 'vaegn' "
                                    "(choose from 'vae', 'vaegan') (see 'keras-vae train --help')"),
])
def test_a_mistyped_option_is_named_by_its_subcommand_with_the_closest_option(capsys, argv, line):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == "" and err == line + "\n"


def test_a_missing_or_foreign_config_file_is_named_once(capsys, tmp_path):
    code, _, err = run_cli(capsys, "train", "--config", str(tmp_path / "c.yaml"))
    # the path is echoed bounded (short(): a long temporary path is cut), once, in one line
    assert code == 2 and err == f"keras-vae train: error: configuration file {short(str(tmp_path / 'c.yaml'))} does not exist\n"
    code, _, err = run_cli(capsys, "train", "--config", str(tmp_path))
    assert code == 2 and err == (f"keras-vae train: error: configuration file {short(str(tmp_path))} is a folder: "
                                 "pass a YAML or JSON file\n")


def test_run_folder_without_model(capsys, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    code, _, err = run_cli(capsys, "evaluate", str(tmp_path))
    assert code == 2 and "has no model.keras" in err


@pytest.mark.parametrize("command", [["evaluate"], ["export", "--out", "elsewhere"]])
def test_an_export_folder_where_a_run_folder_belongs_is_named_as_such(capsys, tmp_path, command):
    from keras_vae.export import contract
    from keras_vae.runs import folder

    assert folder.EXPORT_FILE == contract.EXPORT_JSON
    (tmp_path / contract.EXPORT_JSON).write_text("{}")
    (tmp_path / "decoder.onnx").write_bytes(b"")
    code, _, err = run_cli(capsys, command[0], str(tmp_path), *command[1:])
    assert code == 2 and err == (f"keras-vae {command[0]}: error: '{tmp_path}' is an export folder (keras-vae export), "
                                 "not a run folder: pass the run folder it was exported from (export.json 'source' "
                                 "names it)\n")


@pytest.mark.parametrize("command", ["evaluate", "sample"])
def test_a_savedmodel_where_a_run_folder_belongs_is_named_as_such(capsys, tmp_path, command):
    version = tmp_path / "exp" / "savedmodel" / "vae" / "1"
    version.mkdir(parents=True)
    (version / "saved_model.pb").write_bytes(b"")
    code, _, err = run_cli(capsys, command, str(version))
    assert code == 2 and err == (f"keras-vae {command}: error: '{version}' is a SavedModel (TF Serving), not a run "
                                 "folder: pass the run folder it was exported from, or, to keras-vae sample, the "
                                 "export folder that holds it\n")


@pytest.mark.parametrize("folder_left", [True, False])
def test_an_interrupted_train_names_the_out_folder_that_resumes_it(capsys, tmp_path, monkeypatch, folder_left):
    from keras_vae.training import loop

    def interrupted(config, out_dir, **kwargs):
        if folder_left:  # a run that finished an epoch keeps its folder (and checkpoint)
            out_dir.mkdir()
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--preset", "tiny-vae", "--out", str(out))
    resume = f": the same command with --out {out} resumes the run from its last finished epoch" if folder_left else ""
    assert code == 130 and err == f"keras-vae train: interrupted{resume}\n"
