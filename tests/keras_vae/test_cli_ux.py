"""The CLI as a new user meets it: help text, start-of-run summary and phases, runs/latest, schedules apart
from measurements, TensorFlow's start-up noise hidden. The resume message and the total time of a resumed run
are checked on the interrupted VAEGAN run of test_weight_averaging (one interrupted run for both)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from keras_vae.cli import build_parser
from keras_vae.utils.quiet import is_startup_noise

REPO = Path(__file__).resolve().parents[2]


def _all_parsers():
    parser = build_parser()
    subcommands = parser._subparsers._group_actions[0].choices
    return {"keras-vae": parser, **subcommands}


def test_help_shows_each_default_once_and_none_for_required_or_unset_options():
    for name, parser in _all_parsers().items():
        text = " ".join(parser.format_help().split())  # undo line wrapping
        assert "(default: None)" not in text, name
        assert "(default: False)" not in text, name
        assert not re.search(r"\(default[^)]*\)\s*\(default", text), name
        for action in parser._actions:
            if action.required and action.option_strings:
                block = text.split(action.option_strings[-1], 1)[1][:200]
                assert "(default:" not in block.split(" --")[0], (name, action.option_strings)
    help_text = " ".join(_all_parsers()["train"].format_help().split())
    assert help_text.count("(default: runs/<timestamp>)") == 1
    assert "(default: 64)" in " ".join(_all_parsers()["sample"].format_help().split())


@pytest.mark.parametrize("line, noise", [
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", True),
    ("I0000 00:00:1795843882.439441   13589 port.cc:153] oneDNN custom operations are on.", True),
    ("I0000 00:00:1795843882.439985   13589 cudart_stub.cc:31] Could not find cuda drivers on your machine.", True),
    ("E0000 00:00:1795843913.116068   13589 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error", True),
    ("E0000 00:00:1795849774.622311   15061 util.cc:131] oneDNN supports DT_INT32 only on platforms with AVX-512. "
     "Falling back to the default Eigen-based implementation if present.", True),
    ("E0000 00:00:1795843913.116068   13589 op_kernel.cc:1840] OP_REQUIRES failed at conv_ops.cc: OOM", False),
    ("F0000 00:00:1795843913.116068   13589 check.cc:10] Check failed: x", False),
    ("keras-vae sample: error: run folder 'x' does not exist", False),
    ("Traceback (most recent call last):", False),
    ("  warnings.warn(...) UserWarning: something", False),
])
def test_startup_noise_is_recognised_and_real_errors_are_kept(line, noise):
    assert is_startup_noise(line + "\n") is noise


def _cli_env():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it
    return env


def _cli(*argv, cwd, verbose=False):
    args = [sys.executable, "-m", "keras_vae", *(["-v"] if verbose else []), *argv]
    return subprocess.run(args, capture_output=True, text=True, env=_cli_env(), cwd=cwd, timeout=600)


def background_jobs(items, tmp_path_factory):
    """The Quick tour's `keras-vae train` (``quick_tour``) in a process of its own, run ahead of its tests
    (tests.support.background)."""
    from tests.support.background import Job

    if not any("quick_tour" in item.fixturenames for item in items):
        return {}
    cwd = tmp_path_factory.mktemp("tour")
    argv = [sys.executable, "-m", "keras_vae", "train", "--preset", "tiny-vae", "--epochs", "1", "--iwae-samples", "4",
            "--set", "train.iwae_examples=16"]
    return {"quick tour": Job(argv, tmp_path_factory.mktemp("tour-log"), env=_cli_env(), cwd=cwd, timeout=600,
                              out=cwd)}


@pytest.fixture(scope="module")
def quick_tour(background):
    """`keras-vae train` into runs/<timestamp> from a fresh folder, as the Quick tour runs it."""
    result = background.result("quick tour")
    assert result.returncode == 0, result.stderr[-3000:]
    return background.jobs["quick tour"].out, result


@pytest.fixture(scope="module")
def sampled_from_latest(quick_tour):
    """`keras-vae -v sample runs/latest --n 4 --out s.png` in the Quick tour's folder: one process for two tests
    (runs/latest is accepted; -v shows TensorFlow's start-up lines)."""
    cwd, _ = quick_tour
    return _cli("sample", "runs/latest", "--n", "4", "--out", "s.png", cwd=cwd, verbose=True)


@pytest.mark.slow
def test_train_announces_the_run_and_every_phase(quick_tour):
    _, result = quick_tour
    out = result.stdout
    first = out.splitlines()[:5]
    assert first[0].startswith("run folder: runs/") and first[1].startswith("data: embedded MNIST")
    assert re.match(r"model: vae \(tiny-vae\), latent 4, image 28x28x1, [\d,]+ parameters \(encoder [\d,]+, "
                    r"decoder [\d,]+\)", first[2])
    assert first[3] == "plan: 1 epoch x 5 steps = 5 steps"  # tiny-vae: 600 digits, batch 32, 5 steps per epoch
    for phase in ("saving model.keras", "reconstruction error", "IWAE estimate of log p(x) (K=4, 16 examples)",
                  "figures"):
        assert re.search(re.escape(phase) + r"[^\n]* \.\.\.\n", out), phase
        assert re.search(re.escape(phase) + r"[^\n]*: done in [\d.]+ s", out), phase
    assert (out.index("plan:") < out.index("elbo:") < out.index("IWAE estimate of log p(x) (K=4, 16 examples) ...")
            < out.index("figures (samples"))


@pytest.mark.slow
def test_train_plans_and_paces_the_sampler_fit_and_says_where_the_images_are(quick_tour):
    cwd, result = quick_tour
    out = result.stdout
    then = next(line for line in out.splitlines() if line.startswith("then: "))
    assert "latent sampler fit" in then and "evaluation (sample quality" in then
    # off a terminal the mixture search prints a line per step with an ETA
    assert re.search(r"\n  BatchNorm statistics and latent samplers: \d+/\d+ steps, \d+ s, ETA \d+ s\n", out)
    images = next(line for line in out.splitlines() if line.startswith("images: ")).split(": ", 1)[1].split(", ")
    assert [Path(p).name for p in images] == ["samples.png", "reconstructions.png", "latent.png",
                                              "interpolations.png", "traversals.png"]
    assert all((cwd / p).is_file() for p in images)


@pytest.mark.slow
def test_stderr_has_no_tensorflow_startup_noise_but_v_shows_it(quick_tour, sampled_from_latest):
    _, result = quick_tour
    assert not [line for line in result.stderr.splitlines() if is_startup_noise(line)], result.stderr[-2000:]
    assert "cuInit" not in result.stderr and "absl::InitializeLog" not in result.stderr
    shown = sampled_from_latest
    assert shown.returncode == 0, shown.stderr[-2000:]
    if not any(is_startup_noise(line) for line in shown.stderr.splitlines()):
        pytest.skip("this TensorFlow build prints no start-up lines: nothing to hide")


@pytest.mark.slow
def test_runs_latest_links_the_newest_run_and_commands_accept_it(quick_tour, sampled_from_latest):
    cwd, result = quick_tour
    latest = cwd / "runs" / "latest"
    assert latest.is_symlink()
    run_dir = result.stdout.splitlines()[0].split(": ", 1)[1]
    assert latest.resolve() == (cwd / run_dir).resolve()
    assert "(also runs/latest)" in result.stdout
    sampled = sampled_from_latest  # `keras-vae -v sample runs/latest ... --out s.png` in the fresh tour folder
    assert sampled.returncode == 0 and (cwd / "s.png").is_file(), sampled.stderr[-2000:]


@pytest.mark.slow
def test_metrics_keep_schedules_apart_from_measurements(quick_tour):
    cwd, _ = quick_tour
    epoch = json.loads((cwd / "runs" / "latest" / "metrics.json").read_text())["epochs"][0]
    assert "beta" not in epoch["train"] and "beta" not in epoch["validation"]
    assert epoch["schedules"]["beta"] == 1.0  # tiny-vae: no KL warm-up
    assert epoch["schedules"]["learning_rate"] == pytest.approx(1e-3)
    assert {"loss", "elbo", "kl"} <= set(epoch["train"]) and {"loss", "elbo", "kl"} <= set(epoch["validation"])


def _events(log_dir: Path) -> dict[str, list]:
    """tag -> [(step, plugin name, tensor proto)] of every event file under log_dir."""
    import tensorflow as tf

    found: dict[str, list] = {}
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.metadata.plugin_data.plugin_name,
                                                        value.tensor))
    return found


@pytest.mark.slow
def test_tensorboard_gets_images_histograms_diagnostics_schedules_and_final(quick_tour):
    import tensorflow as tf

    cwd, _ = quick_tour
    events = _events(cwd / "runs" / "latest" / "logs" / "model")
    for tag in ("images/samples", "images/reconstructions", "images/interpolations"):
        assert events[tag][0][1] == "images", tag
    for tag in ("codes/mean", "codes/log_variance", "codes/mean_dim_0", "codes/mean_dim_3"):
        assert events[tag][0][1] == "histograms", tag
    assert "codes/mean_dim_4" not in events  # tiny-vae has 4 latent dimensions
    for tag in ("diagnostics/active_units", "diagnostics/mean_posterior_variance", "schedules/beta",
                "schedules/learning_rate", "final/reconstruction_mae", "final/nll"):
        assert events[tag][0][1] == "scalars", tag
    lr = tf.make_ndarray(events["schedules/learning_rate"][0][2])
    assert float(lr) == pytest.approx(1e-3)
    metrics = json.loads((cwd / "runs" / "latest" / "metrics.json").read_text())
    assert float(tf.make_ndarray(events["final/nll"][0][2])) == pytest.approx(metrics["final"]["validation"]["nll"])
    # the samples grid: 16 images of 28x28 in 4 columns with 1-pixel gaps -> 115x115 PNG
    width, height, png = tf.make_ndarray(events["images/samples"][0][2])
    assert (int(width), int(height)) == (115, 115)
    assert tuple(tf.io.decode_png(png).shape) == (115, 115, 1)
    # reconstructions: 8 inputs over 8 reconstructions -> 2 rows x 8 columns
    width, height, _ = tf.make_ndarray(events["images/reconstructions"][0][2])
    assert (int(width), int(height)) == (8 * 29 - 1, 2 * 29 - 1)
