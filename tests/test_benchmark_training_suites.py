"""The training-speed suites of ``python -m benchmarks`` (step, input, scale, precision): each runs at its
smallest size and writes valid JSON, markdown and summary rows; their arithmetic against closed forms.
No timing is asserted."""
from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks import input_speed, precision_speed, scale_cost, step_overhead
from benchmarks.__main__ import SUITES, summary_table
from benchmarks.common import write_result
from benchmarks.training_common import paired_ratios

GIB = 2 ** 30
ROOT = Path(__file__).resolve().parents[1]

# run(size="smoke", repeats=1) of each suite module named in argv[3:], one after the other, each pickled to
# argv[2]/<module>.pkl: in one process of its own that starts with the session (tests.support.background), on the
# core the test process leaves idle; one process for the four suites starts TensorFlow once (the suites restore
# the precision policy they change; the scale suite measures memory in processes of its own)
SMOKE = """
import importlib, pickle, sys
sys.path.insert(0, sys.argv[1])
for name in sys.argv[3:]:
    result = importlib.import_module(name).run(size="smoke", repeats=1, log=lambda m: None)
    with open(f"{sys.argv[2]}/{name}.pkl", "wb") as f:
        pickle.dump(result, f)
"""
SMOKE_TESTS = {"test_step_suite_smoke": step_overhead, "test_input_suite_smoke": input_speed,
               "test_precision_suite_smoke": precision_speed, "test_scale_suite_smoke": scale_cost}


def background_jobs(items, tmp_path_factory):
    from tests.support.background import Job

    names = dict.fromkeys(item.originalname for item in items if item.originalname in SMOKE_TESTS)
    if not names:
        return {}
    tmp = tmp_path_factory.mktemp("smoke")
    return {"smoke suites": Job([sys.executable, "-c", SMOKE, str(ROOT), str(tmp),
                                 *(SMOKE_TESTS[name].__name__ for name in names)], tmp, cwd=ROOT, out=tmp)}


def _smoke_result(background, name):
    """What ``SMOKE_TESTS[name].run(size="smoke", repeats=1)`` returned."""
    done = background.result("smoke suites")
    assert done.returncode == 0, done.stderr[-3000:]
    with open(background.jobs["smoke suites"].out / f"{SMOKE_TESTS[name].__name__}.pkl", "rb") as f:
        return pickle.load(f)


def test_suites_are_registered():
    for name, module in (("step", step_overhead), ("input", input_speed), ("scale", scale_cost),
                         ("precision", precision_speed)):
        assert SUITES[name][0] == module.__name__


def test_paired_ratios_pair_rounds():
    a = {"rounds": {"img_per_s": [10.0, 20.0, 30.0], "cpu_ms_per_img": [2.0, 4.0, 1.0]}}
    b = {"rounds": {"img_per_s": [20.0, 20.0, 20.0], "cpu_ms_per_img": [1.0, 4.0, 2.0]}}
    ratios = paired_ratios(a, b)
    assert ratios["speed"] == pytest.approx(1.0)  # median of 0.5, 1, 1.5
    assert ratios["cpu"] == pytest.approx(1.0)  # median of 0.5, 1, 2 (b's CPU over a's)


def test_memory_line_and_largest_batch():
    line = scale_cost.memory_line({"batch": 1, "peak_rss_bytes": 3 * GIB}, {"batch": 3, "peak_rss_bytes": 7 * GIB})
    assert line["bytes_per_image"] == 2 * GIB and line["intercept_bytes"] == 1 * GIB
    assert scale_cost.largest_batch(line) == 11  # 1 + 11 * 2 = 23 <= 24 < 25
    assert scale_cost.largest_batch({"bytes_per_image": 0.0, "intercept_bytes": GIB}) is None


def test_psnr_closed_form():
    images = np.full((3, 4, 4, 1), 0.5, np.float32)
    assert precision_speed.psnr(images + 0.1, images) == pytest.approx(20.0, abs=1e-4)  # MSE 0.01
    assert precision_speed.psnr(images + 0.01, images) == pytest.approx(40.0, abs=1e-3)


def test_write_jpegs_round_trip(tmp_path):
    from PIL import Image

    from keras_vae.data.embedded import load_embedded_mnist

    input_speed.write_jpegs(str(tmp_path), (28, 28, 1), 3)
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["00000.jpg", "00001.jpg", "00002.jpg"]
    decoded = np.asarray(Image.open(files[1]), np.float32)
    assert decoded.shape == (28, 28)
    # JPEG at quality 95 keeps the digit: mean error a few grey levels of 255
    assert np.mean(np.abs(decoded - load_embedded_mnist()[0][1])) < 8.0
    (tmp_path / "rgb").mkdir()
    input_speed.write_jpegs(str(tmp_path / "rgb"), (16, 16, 3), 1)
    assert np.asarray(Image.open(tmp_path / "rgb" / "00000.jpg")).shape == (16, 16, 3)


def _check(module, result, name, tmp_path):
    json_path, md_path = write_result(name, result, module.to_markdown(result), tmp_path)
    loaded = json.loads(json_path.read_text())
    assert loaded["suite"] == result["suite"] and loaded["size"] == "smoke"
    assert md_path.read_text().startswith("# ")
    rows = module.summary_rows(loaded)
    assert rows and all(len(row) == 5 for row in rows)
    return loaded


@pytest.mark.slow
def test_step_suite_smoke(tmp_path, background):
    result = _smoke_result(background, "test_step_suite_smoke")
    loaded = _check(step_overhead, result, "step_overhead", tmp_path)
    variants = loaded["presets"]["tiny"]["variants"]
    assert set(variants) == set(step_overhead.VARIANTS)
    assert all(v["img_per_s"] > 0 and v["cpu_ms_per_img"] >= 0 for v in variants.values())


@pytest.mark.slow
def test_plain_alternating_step_matches_vaegan_losses():
    """The plain alternating step is the VAEGAN's math: from the same weights and noise-free posterior
    (sample_posterior off), one step gives the same VAE and D losses and the same weights after it."""
    import dataclasses

    import keras
    import tensorflow as tf

    from keras_vae.models import build_model
    from keras_vae.config.presets import get_preset

    config = get_preset("tiny")
    config = dataclasses.replace(config, loss=dataclasses.replace(config.loss, sample_posterior=False))
    models = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        models.append(build_model(config))
        models[-1].compile_for_training(config.train)
    x = tf.random.stateless_uniform((8, 16, 16, 1), seed=(3, 4), minval=-1.0, maxval=1.0)
    logs = models[0].train_step(x)
    alternating, _ = step_overhead._plain_steps(models[1], sample_posterior=False)
    g_loss, d_loss = alternating(x)
    # float32 sums over a few thousand terms in another order: relative 1e-5
    assert float(g_loss) == pytest.approx(float(logs["loss"]), rel=1e-5)
    assert float(d_loss) == pytest.approx(float(logs["disc_loss"]) * config.loss.adversarial_weight, rel=1e-5)
    for a, b in zip(models[0].weights, models[1].weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6, err_msg=a.path)


@pytest.mark.slow
def test_input_suite_smoke(tmp_path, background):
    result = _smoke_result(background, "test_input_suite_smoke")
    loaded = _check(input_speed, result, "input_speed", tmp_path)
    p = loaded["presets"]["tiny"]
    assert set(p["inputs"]) == set(input_speed.INPUTS) and p["num_files"] == input_speed.NUM_FILES["smoke"]
    assert set(p["first_epoch"]) == {"embedded", "folder"}


@pytest.mark.slow
def test_precision_suite_smoke(tmp_path, background):
    result = _smoke_result(background, "test_precision_suite_smoke")
    loaded = _check(precision_speed, result, "precision_speed", tmp_path)
    p = loaded["presets"]["tiny"]
    assert set(p["validation_psnr_db"]) == set(precision_speed.POLICIES)
    assert all(np.isfinite(v) for v in p["validation_psnr_db"].values())


@pytest.mark.slow
def test_scale_suite_smoke(tmp_path, background):
    result = _smoke_result(background, "test_scale_suite_smoke")
    loaded = _check(scale_cost, result, "scale_cost", tmp_path)
    assert [p.get("error") for p in loaded["points"]] == [None, None]
    assert [p["batch"] for p in loaded["points"]] == [1, 2]
    assert all(p["peak_rss_bytes"] >= p["rss_before_training_bytes"] > 0 for p in loaded["points"])
    assert "16" in loaded["memory"]
    assert "paper model 16px" in summary_table(tmp_path)


def test_estimate_scales_memory_per_image_with_pixels():
    lines = {"64": {"bytes_per_image": 1 * GIB, "intercept_bytes": 2 * GIB},
             "128": {"bytes_per_image": 4 * GIB, "intercept_bytes": 2 * GIB}}
    est = scale_cost.estimate(lines, 256)
    assert est["from_pixels"] == 128 and est["bytes_per_image"] == 16 * GIB and est["intercept_bytes"] == 2 * GIB
    assert est["largest_batch_24gib"] == 1  # 2 + 16 <= 24 < 2 + 32
    assert est["measured_growth"]["bytes_per_image_ratio"] == 4.0 and est["measured_growth"]["pixel_ratio"] == 4.0
    assert scale_cost.estimate({}, 256) is None
