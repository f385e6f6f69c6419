"""What the CLI tells a user before and during the long parts: every train option's default in --help
(the preset's where it comes from the preset), no wrong "(default: True)" on a store_false flag, the
--quick first run, the start banner's "then:" plan, and step-by-step progress with an ETA for the latent
sampler fit and the export."""
from __future__ import annotations

import functools
import io
import re

import numpy as np
import pytest

from keras_vae.cli import build_parser
from keras_vae.config.presets import DEFAULT_PRESET, get_preset
from keras_vae.errors import ConfigError


@functools.lru_cache(maxsize=None)
def _parser(command: str):
    return build_parser()._subparsers._group_actions[0].choices[command]


def _help(command: str) -> str:
    return " ".join(_parser(command).format_help().split())  # undo argparse's line wrapping


def _option_help(command: str, flag: str) -> str:
    """The help block of one option, as --help prints it (line wrapping undone)."""
    parser = _parser(command)
    action = next(a for a in parser._actions if flag in a.option_strings)
    formatter = parser._get_formatter()
    formatter.add_argument(action)
    return " ".join(formatter.format_help().split())


@pytest.mark.parametrize("flag, section, field", [
    ("--epochs", "train", "epochs"),
    ("--batch-size", "train", "batch_size"),
    ("--learning-rate", "train", "learning_rate"),
    ("--latent-dim", "model", "latent_dim"),
    ("--seed", "train", "seed"),
])
def test_train_help_shows_the_preset_defaults(flag, section, field):
    block = _option_help("train", flag)
    shown = []
    for preset in (DEFAULT_PRESET["vae"], DEFAULT_PRESET["vaegan"]):
        value = getattr(getattr(get_preset(preset), section), field)
        shown.append(f"{preset}: {value:g}" if isinstance(value, float) else f"{preset}: {value}")
    assert f"(default: from the preset; {', '.join(shown)})" in block, block


def test_every_train_option_says_its_default():
    no_default = {"--help", "--config", "--set", "--force", "--restart", "--quiet", "--quick"}  # files, flags
    for action in _parser("train")._actions:
        if not action.option_strings or action.option_strings[-1] in no_default:
            continue
        assert "default" in _option_help("train", action.option_strings[0]).lower(), action.option_strings


def test_store_false_flags_do_not_claim_default_true():
    block = _option_help("export", "--no-attributes")
    assert "(default: True)" not in block
    assert "default: written when the run's data has labels" in block
    args = build_parser().parse_args(["export", "run", "--out", "e"])
    assert args.attributes is True and build_parser().parse_args(
        ["export", "run", "--out", "e", "--no-attributes"]).attributes is False


def test_quick_is_the_quick_preset_and_conflicts_are_one_line_errors():
    from keras_vae.commands import train as train_command
    from keras_vae.commands.options import resolve_config

    args = build_parser().parse_args(["train", "--quick"])
    assert args.quick and "--quick" in _help("train")
    config = get_preset("quick")
    assert config.model == get_preset("mnist-mlp").model  # the default model, a shorter recipe
    assert config.train.epochs < get_preset("mnist-mlp").train.epochs
    args.preset = train_command.QUICK_PRESET
    assert resolve_config(args) == config
    bad = build_parser().parse_args(["train", "--quick", "--preset", "mnist-28"])
    with pytest.raises(ConfigError, match=r"--quick is --preset quick, and --preset is 'mnist-28': drop one"):
        train_command.run(bad)


@pytest.mark.parametrize("preset, words", [
    ("mnist-mlp", ["latent sampler fit (a mixture search", "evaluation (sample quality"]),
    ("mnist-28", ["BatchNorm statistics, latent sampler fit", "evaluation (sample quality"]),
])
def test_start_banner_plans_the_sampler_fit_and_the_evaluation(preset, words):
    from types import SimpleNamespace

    from keras_vae.models import build_model
    from keras_vae.utils.progress import start_summary

    config = get_preset(preset)
    data = SimpleNamespace(description="digits", train=None)
    then = start_summary(config, "runs/x", data, build_model(config))[-1]
    assert then.startswith("then: ")
    for word in words:
        assert word in then
    assert then.index("latent sampler fit") < then.index("save model.keras") < then.index("evaluation") \
        < then.index("figures")


@pytest.mark.parametrize("preset", ["mnist-mlp", "mnist-28"])
def test_start_banner_of_a_conditional_run_lists_the_phases_it_runs(preset):
    # the training loop skips the label-free sampler fit and sample quality of a class-conditional run; both
    # models fit their class samplers after saving; the VAEGAN's BatchNorm statistics are refreshed before it
    from types import SimpleNamespace

    from keras_vae.config import merge
    from keras_vae.models import build_model
    from keras_vae.utils.progress import start_summary

    config = merge(get_preset(preset), {"model": {"num_classes": 10}})
    then = start_summary(config, "runs/x", SimpleNamespace(description="digits", train=None), build_model(config))[-1]
    assert "latent sampler fit" not in then and "sample quality" not in then, then
    assert then.index("save model.keras") < then.index("class samplers") < then.index("reconstruction error") \
        < then.index("figures"), then
    if preset == "mnist-28":  # residual networks with BatchNorm in batch mode
        assert then.startswith("then: BatchNorm statistics, save model.keras"), then
    else:
        assert "BatchNorm" not in then, then


def test_phase_lines_report_each_step_with_an_eta():
    from keras_vae.utils.progress import Reporter

    out = io.StringIO()
    with Reporter(stream=out).phase("latent samplers (the mixture search)", 4, lines=True) as bar:
        for _ in range(4):
            bar.update(1)
    lines = out.getvalue().splitlines()
    assert lines[0] == "latent samplers (the mixture search) ..."
    assert [re.match(r"  latent samplers: (\d)/4 steps, \d+ s, ETA \d+ s$", line).group(1) for line in lines[1:4]] \
        == ["1", "2", "3"]
    assert re.match(r"latent samplers \(the mixture search\): done in [\d.]+ s$", lines[4])
    quiet = io.StringIO()
    with Reporter(stream=quiet, bars=False).phase("export", 3, lines=True) as bar:  # --quiet: no step lines
        bar.update(3)
    assert len(quiet.getvalue().splitlines()) == 2


def test_mixture_search_reports_every_grid_cell_once():
    from keras_vae.sampling.samplers import fit_samplers, gmm_search_steps
    from keras_vae.training.after_fit import FINISH_STEPS_BEFORE_SEARCH, finish_training_steps

    rng = np.random.default_rng(0)
    means = np.concatenate([rng.normal(-2, 0.3, (60, 2)), rng.normal(2, 0.3, (60, 2))])
    variances = np.full_like(means, 0.01)
    done = []
    fit_samplers(means, variances, rng.normal(0, 2, (20, 2)), components=(1, 2, 4, 256), shrinkage=(0.0, 0.1),
                 progress=done.append)
    # K = 256 > 120 codes is never tried and the early stop skips sizes: both still count as done
    assert sum(done) == gmm_search_steps((1, 2, 4, 256), (0.0, 0.1)) == 8
    assert finish_training_steps() == FINISH_STEPS_BEFORE_SEARCH + gmm_search_steps() + 2  # covariance scale, saving


@pytest.mark.slow
def test_export_reports_each_of_its_steps(vae_run, tmp_path):
    from keras_vae.export import export_run
    from keras_vae.export.exporter import export_steps

    done = []
    export_run(vae_run, tmp_path / "exp", progress=done.append)
    assert sum(done) == len(done) == export_steps() and export_steps(True, True) == export_steps() + 2
