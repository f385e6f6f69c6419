"""Ablation: variant configs, table and report, and the CLI end to end (tiny preset), whose numbers are
recomputed from the samples and model it saved."""
import dataclasses
import json

import numpy as np
import pytest

from keras_vae.ablation.study import (VARIANTS, folder_name, high_frequency_energy, markdown_table, select_variants,
                                value, variant_configs, write_report)
from keras_vae.cli import main
from keras_vae.errors import ConfigError
from keras_vae.evaluation.report import entry
from keras_vae.config import merge
from keras_vae.config.presets import get_preset


def test_variants_share_budget_and_seed_and_differ_only_in_loss_switches_and_bn_mode():
    config = get_preset("mnist-28")
    variants = variant_configs(config, steps=7, seed=3)
    assert list(variants) == ["standard-kl", "mixture-kl", "mixture-kl+varreg", "+patchgan", "+patchgan-bn-reference"]
    for name, variant in variants.items():
        assert variant.data == config.data
        assert variant.model == dataclasses.replace(config.model, bn_mode=variant.model.bn_mode)
        assert (variant.train.epochs, variant.train.steps_per_epoch, variant.train.seed) == (1, 7, 3)
        assert variant.train.batch_size == config.train.batch_size
        for field in ("reconstruction_weight", "variance_weight", "adversarial_weight", "population_variance"):
            assert getattr(variant.loss, field) == getattr(config.loss, field)
    switches = [(v.loss.kl, v.loss.use_variance_regularizer, v.loss.use_discriminator, v.model.bn_mode)
                for v in variants.values()]
    assert switches == [("standard", False, False, "batch"), ("population", False, False, "batch"),
                        ("population", True, False, "batch"), ("population", True, True, "batch"),
                        ("population", True, True, "reference")]


def test_only_the_bn_reference_variant_caps_its_learning_rates():
    """mnist-28 trains at Adam 4e-3 (both optimizers); the bn-reference variant at min(4e-3, its cap); a
    preset already below the cap (tiny: 1e-4) keeps its rates in every variant."""
    cap = VARIANTS["+patchgan-bn-reference"]["train"]["max_learning_rate"]
    assert cap < 4e-3
    for preset, expected in (("mnist-28", cap), ("tiny", 1e-4)):
        config = get_preset(preset)
        for name, variant in variant_configs(config, steps=10).items():
            rates = (variant.train.learning_rate, variant.train.disc_learning_rate)
            if name == "+patchgan-bn-reference":
                assert rates == (expected, expected)
            else:
                assert rates == (config.train.learning_rate, config.train.disc_learning_rate)
            assert dataclasses.replace(variant.train, learning_rate=1.0, disc_learning_rate=1.0) == dataclasses.replace(
                config.train, learning_rate=1.0, disc_learning_rate=1.0, epochs=variant.train.epochs,
                steps_per_epoch=variant.train.steps_per_epoch)


def test_variants_spread_the_steps_over_the_presets_epochs_when_they_divide_them():
    config = merge(get_preset("mnist-28"), {"train": {"epochs": 6}})  # cosine learning rate per epoch
    assert config.train.lr_schedule == "cosine"
    for variant in variant_configs(config, steps=846).values():
        assert (variant.train.epochs, variant.train.steps_per_epoch) == (6, 141)
    for variant in variant_configs(config, steps=845).values():
        assert (variant.train.epochs, variant.train.steps_per_epoch) == (1, 845)


def test_select_variants_keeps_table_order_and_rejects_unknown_names():
    assert select_variants(None) == list(VARIANTS)
    assert select_variants(["+patchgan", "standard-kl"]) == ["standard-kl", "+patchgan"]
    assert list(variant_configs(get_preset("tiny"), 2, names=["+patchgan-bn-reference"])) == ["+patchgan-bn-reference"]
    with pytest.raises(ConfigError, match="unknown ablation variant 'patchgan'"):
        select_variants(["patchgan"])
    assert folder_name("+patchgan-bn-reference") == "plus-patchgan-bn-reference"


def test_high_frequency_energy():
    flat = np.full((2, 8, 8, 1), 0.3)
    assert high_frequency_energy(flat) == pytest.approx(0.0, abs=1e-20)
    ramp = np.broadcast_to(np.linspace(0, 1, 8)[None, None, :, None], (1, 8, 8, 1))  # x[i, j] = j / 7
    assert high_frequency_energy(ramp) == pytest.approx(0.0, abs=1e-12)  # linear: no curvature
    checker = (np.indices((8, 8)).sum(0) % 2).astype(float)[None, :, :, None]
    assert high_frequency_energy(checker) == pytest.approx(16.0)  # (4x - 4(1 - x))^2 = 16 at every pixel
    rng = np.random.default_rng(0)
    sharp = rng.uniform(size=(4, 16, 16, 1))
    blurred = (sharp + np.roll(sharp, 1, 1) + np.roll(sharp, 1, 2) + np.roll(sharp, (1, 1), (1, 2))) / 4
    assert high_frequency_energy(blurred) < 0.5 * high_frequency_energy(sharp)


def _row(fd, psnr):
    quality = {"frechet_distance": entry("frechet_distance", fd, 50), "precision": entry("precision", 0.5, 50),
               "recall": entry("recall", 0.25, 40)}
    return {"sampler": {"kind": "gmm", "components": 4},
            "aggregate_samples": quality,
            "prior_samples": {**quality, "frechet_distance": entry("frechet_distance", 2 * fd, 50)},
            "reconstruction": {"psnr": entry("psnr", psnr, 40), "ssim": entry("ssim", 0.75, 40),
                               "mae": entry("mae", 0.0625, 40)},
            "latent": {"active_units": {**entry("active_units", 3, 40), "of": 8},
                       "mean_posterior_variance": entry("mean_posterior_variance", 0.125, 40),
                       "aggregate_mean_rms": entry("aggregate_mean_rms", 0.5, 40),
                       "aggregate_variance_mean": entry("aggregate_variance_mean", 1.5, 40)},
            "training": {"train_seconds": 1.5}, "status": "finished",
            "learning_rate": {"generator": 0.004, "discriminator": 0.004}}


def test_table_and_report_show_the_rows_values(tmp_path):
    rows = {name: _row(10.0 + i, 20.0 + i) for i, name in enumerate(VARIANTS)}
    table = markdown_table(rows)
    assert table.count("\n") == 2 + len(VARIANTS)
    assert table.splitlines()[-1] == ("| +patchgan-bn-reference | 0.004 * | gmm (K=4) | 14 | 0.5 / 0.25 | 28 | 0.5 / 0.25 "
                                      "| 24 | 0.75 | 0.0625 | 3/8 | 0.125 | 0.5 | 1.5 | 1.5 |")
    assert table.splitlines()[-2].startswith("| +patchgan | 0.004 | gmm (K=4) | 13 |")
    header = {"preset": "tiny", "steps": 2, "batch_size": 8, "seed": 0, "samples": 50, "validation_images": 40,
              "feature_net": "a test net"}
    json_path, md_path = write_report(rows, tmp_path, header)
    report = json.loads(json_path.read_text())
    assert value(report["variants"]["mixture-kl"], "aggregate_samples", "frechet_distance") == 11.0
    assert report["variants"]["mixture-kl"]["aggregate_samples"]["recall"]["n"] == 40
    text = md_path.read_text()
    assert "# Ablation: tiny, 2 steps" in text and table in text
    assert "50 samples per variant and sampler (seed 0) against 40 validation images, embedded by a test net" in text
    assert "plus-patchgan-bn-reference/samples-aggregate.png" in text
    assert "\\* +patchgan-bn-reference: Adam learning rates (generator and discriminator) at most 0.0004: " in text


def test_rows_of_separate_runs_are_collected_only_when_made_alike(tmp_path):
    from keras_vae.ablation.study import collect_rows, save_row

    header = {"preset": "tiny", "steps": 2, "batch_size": 8, "seed": 0, "samples": 50, "validation_images": 40,
              "data": {"source": "embedded", "exclude_labels": (1, 2)}}  # tuples come back from JSON as lists
    save_row(tmp_path / folder_name("+patchgan"), header, _row(1.0, 2.0))
    save_row(tmp_path / folder_name("standard-kl"), header, _row(3.0, 4.0))
    save_row(tmp_path / folder_name("mixture-kl"), {**header, "steps": 3}, _row(5.0, 6.0))  # another budget
    rows = collect_rows(tmp_path, header)
    assert list(rows) == ["standard-kl", "+patchgan"]  # table order, the 3-step row left out
    assert value(rows["+patchgan"], "aggregate_samples", "frechet_distance") == 1.0
    assert list(collect_rows(tmp_path, {**header, "steps": 3})) == ["mixture-kl"]


DIVERGENCE = {"epoch": 1, "step": 3, "term": "adversarial", "value": None}  # as the run's status keeps it


def _stub_study(monkeypatch, diverging=()):
    """run_ablation without TensorFlow work: validation data, feature net and evaluation stubbed; returns
    a train_fn that, for the variants in ``diverging``, does what training does when a loss term turns NaN
    (status 'diverged' with where, then TrainingDiverged), and otherwise returns a finished run."""
    from types import SimpleNamespace

    from keras_vae.ablation import evaluate
    from keras_vae.evaluation import features, report
    from keras_vae.runs import lifecycle
    from keras_vae.training.loop import RunResult, TrainingDiverged

    monkeypatch.setattr(report, "evaluation_data", lambda config: SimpleNamespace(real_unit=np.zeros((40, 4, 4, 1))))
    monkeypatch.setattr(features, "feature_net_for_run", lambda *args, **kwargs: (None, "a test net"))
    fd = {"standard-kl": 10.0, "mixture-kl": 11.0, "+patchgan": 13.0}

    def evaluate_variant(model, variant, run_dir, data, feature, **kwargs):
        grid = np.full((4, 4, 4, 1), 0.5, np.float32)
        evaluate.save_samples(run_dir / evaluate.SAMPLES_FILE, grid_aggregate=grid, grid_prior=grid)
        name = next(n for n in VARIANTS if folder_name(n) == run_dir.name)
        row = _row(fd[name], 20.0)
        return {key: row[key] for key in ("sampler", "aggregate_samples", "prior_samples", "reconstruction",
                                          "latent")}, {}

    monkeypatch.setattr(evaluate, "evaluate_variant", evaluate_variant)

    def train_fn(config, run_dir, **kwargs):
        run_dir.mkdir(parents=True, exist_ok=True)
        name = next(n for n in VARIANTS if folder_name(n) == run_dir.name)
        if name in diverging:
            lifecycle.write_status(run_dir, "diverged", divergence={**DIVERGENCE, "value": float("nan")})
            raise TrainingDiverged("training diverged: loss term 'adversarial' became nan at step 3 of epoch 1, "
                                   "before any epoch finished, so no model was saved: lower --learning-rate")
        return RunResult(out_dir=run_dir, model=None, metrics={"train_seconds": 1.5, "epochs": []})

    return train_fn


def test_a_diverged_variant_is_a_row_and_the_other_variants_still_run(tmp_path, monkeypatch):
    from keras_vae.ablation.study import ROW_FILE, run_ablation

    train_fn = _stub_study(monkeypatch, diverging={"mixture-kl"})
    heard = []
    rows = run_ablation(get_preset("tiny"), 2, tmp_path, train_fn=train_fn, announce=heard.append,
                        variants=["standard-kl", "mixture-kl", "+patchgan"], num_samples=8, draws=1)
    assert list(rows) == ["standard-kl", "mixture-kl", "+patchgan"]  # the variant after the diverged one ran too
    assert [row["status"] for row in rows.values()] == ["finished", "diverged", "finished"]
    assert value(rows["+patchgan"], "aggregate_samples", "frechet_distance") == 13.0
    bad = rows["mixture-kl"]
    assert bad["divergence"] == DIVERGENCE and "became nan at step 3 of epoch 1" in bad["error"]
    assert bad["absent"] == ("training diverged (step 3 of epoch 1, loss term 'adversarial' became non-finite) "
                             "before the budget's end, so the variant is not evaluated: no samples, reconstruction "
                             "or latent numbers")
    assert not {"sampler", "aggregate_samples", "prior_samples", "reconstruction", "latent"} & set(bad)
    assert bad["learning_rate"] == {"generator": 1e-4, "discriminator": 1e-4}
    assert any("mixture-kl: DIVERGED (step 3 of epoch 1" in line for line in heard)
    stored = json.loads((tmp_path / "ablation.json").read_text())["variants"]
    assert stored == json.loads(json.dumps(rows))
    assert json.loads((tmp_path / "mixture-kl" / ROW_FILE).read_text())["row"] == stored["mixture-kl"]
    table = (tmp_path / "ablation.md").read_text()
    assert ("| mixture-kl | 0.0001 | **diverged** (step 3 of epoch 1, loss term 'adversarial' became non-finite) | "
            + "- | " * 11 + f"{bad['training']['train_seconds']:.4g} |") in table
    assert "| +patchgan | 0.0001 | gmm (K=4) | 13 |" in table
    assert f"mixture-kl diverged: {bad['absent']}." in table
    assert "![mixture-kl]" not in table and "![+patchgan](plus-patchgan/samples-aggregate.png)" in table
    assert (tmp_path / "ablation.png").is_file()  # the finished variants' grids


def test_a_diverged_row_after_a_finished_epoch_names_the_kept_checkpoint():
    from keras_vae.ablation.study import diverged_row, where_diverged

    variant = variant_configs(get_preset("mnist-28"), 705, names=["+patchgan"])["+patchgan"]
    status = {"status": "diverged", "divergence": {"epoch": 3, "step": "end", "term": "weights", "value": None},
              "kept_epoch": 2}
    row = diverged_row(variant, status, "training diverged: ...", 12.345)
    assert where_diverged(row) == "the end of epoch 3, the weights became non-finite"
    assert row["kept_epoch"] == 2 and row["training"] == {"train_seconds": 12.35}
    assert row["learning_rate"] == {"generator": 4e-3, "discriminator": 4e-3}
    assert row["absent"].endswith("latent numbers (its last good checkpoint, after epoch 2, is its model.keras)")
    assert "kept_epoch" not in diverged_row(variant, {}, "", None) and where_diverged({}) == "where unknown"


def test_only_a_divergence_is_recorded_other_failures_stop_the_study(tmp_path, monkeypatch):
    from keras_vae.ablation.study import run_ablation
    from keras_vae.errors import ArtifactError

    train_fn = _stub_study(monkeypatch)
    for error in (KeyboardInterrupt(), ArtifactError("disk full")):
        def failing(config, run_dir, error=error, **kwargs):
            raise error

        with pytest.raises(type(error)):
            run_ablation(get_preset("tiny"), 2, tmp_path / type(error).__name__, train_fn=failing,
                         variants=["standard-kl", "+patchgan"], num_samples=8, draws=1)
        assert not (tmp_path / type(error).__name__ / "ablation.json").exists()
    rows = run_ablation(get_preset("tiny"), 2, tmp_path / "fine", train_fn=train_fn, variants=["standard-kl"],
                        num_samples=8, draws=1)
    assert rows["standard-kl"]["status"] == "finished"


def test_ablate_cli_exits_0_and_names_the_diverged_variants_when_one_finished(tmp_path, monkeypatch, capsys):
    from keras_vae.training import loop

    argv = ["ablate", "--preset", "tiny", "--steps", "2", "--quiet", "--samples", "8", "--draws", "1"]
    monkeypatch.setattr(loop, "train", _stub_study(monkeypatch, diverging={"+patchgan"}))
    assert main([*argv, "--out", str(tmp_path / "a"), "--variants", "standard-kl,+patchgan"]) == 0
    out = capsys.readouterr().out
    assert "| +patchgan | 0.0001 | **diverged** (step 3 of epoch 1, loss term 'adversarial' became non-finite) |" in out
    assert ("diverged: +patchgan (step 3 of epoch 1, loss term 'adversarial' became non-finite): recorded as "
            "diverged rows without numbers") in out
    assert f"samples: {tmp_path / 'a' / 'ablation.png'}" in out
    assert main([*argv, "--out", str(tmp_path / "b"), "--variants", "+patchgan"]) == 2  # nothing finished
    captured = capsys.readouterr()
    assert "diverged: +patchgan (step 3 of epoch 1" in captured.out
    err = captured.err.strip()
    assert err.startswith("keras-vae ablate: error: every variant diverged (+patchgan (step 3 of epoch 1, loss term "
                          "'adversarial' became non-finite)); their rows are in") and len(err.splitlines()) == 1
    assert json.loads((tmp_path / "b" / "ablation.json").read_text())["variants"]["+patchgan"]["status"] == "diverged"


@pytest.mark.slow
def test_a_variant_whose_training_really_diverges_is_recorded_while_the_other_finishes(tmp_path, monkeypatch):
    """The real training of +patchgan on the tiny preset at an absurd learning rate (1e30) turns a loss
    term NaN in its first steps: its row holds what the training recorded; standard-kl (stubbed, see
    ``_stub_study``) still runs after it and gets its numbers."""
    from keras_vae.ablation.study import run_ablation
    from keras_vae.runs.lifecycle import read_status
    from keras_vae.training.loop import train

    stub = _stub_study(monkeypatch)

    def train_fn(config, run_dir, **kwargs):
        if not config.loss.use_discriminator:
            return stub(config, run_dir, **kwargs)
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, learning_rate=1e30, disc_learning_rate=1e30))
        return train(config, run_dir, **kwargs)

    rows = run_ablation(get_preset("tiny"), 2, tmp_path, train_fn=train_fn, variants=["+patchgan", "standard-kl"],
                        num_samples=8, draws=1)
    assert [(name, row["status"]) for name, row in rows.items()] == [("standard-kl", "finished"),
                                                                    ("+patchgan", "diverged")]
    assert value(rows["standard-kl"], "aggregate_samples", "frechet_distance") == 10.0
    status = read_status(tmp_path / "plus-patchgan")  # what the training wrote
    d = rows["+patchgan"]["divergence"]
    assert status["status"] == "diverged" and d == status["divergence"]
    assert d["epoch"] == 1 and d["step"] in (1, 2) and d["term"] in rows["+patchgan"]["error"]
    assert rows["+patchgan"]["error"].startswith(f"training diverged: loss term {d['term']!r} became")
    assert f"| +patchgan | 0.0001 | **diverged** (step {d['step']} of epoch 1, loss term {d['term']!r}" in (
        tmp_path / "ablation.md").read_text()


def test_ablation_figure_has_a_row_of_grids_per_variant(tmp_path):
    from PIL import Image

    from keras_vae.ablation.plots import plot_ablation

    images = np.random.default_rng(0).uniform(size=(9, 8, 8, 1))
    columns = [("aggregate", "fitted"), ("prior", "prior")]
    one = plot_ablation({"a": {"aggregate": images, "prior": images}}, tmp_path / "one.png", columns, "t")
    two = plot_ablation({"a": {"aggregate": images, "prior": images}, "b": {"aggregate": images, "prior": images}},
                        tmp_path / "two.png", columns, "t")
    h1, h2 = Image.open(one).size[1], Image.open(two).size[1]
    assert 1.6 * h1 < h2 < 2.4 * h1  # one more row of the same height (title and margins aside)


def test_ablate_rejects_bad_input(capsys):
    assert main(["ablate", "--preset", "mnist-mlp", "--steps", "2"]) == 2
    assert "ablate needs a 'vaegan' preset" in capsys.readouterr().err
    assert main(["ablate", "--preset", "nope", "--steps", "2"]) == 2
    assert "unknown preset 'nope': choose" in capsys.readouterr().err
    assert main(["ablate", "--preset", "tiny", "--steps", "0"]) == 2
    capsys.readouterr()
    assert main(["ablate", "--preset", "tiny", "--steps", "2", "--variants", "standard-kl,bogus"]) == 2
    err = capsys.readouterr().err
    assert "unknown ablation variant 'bogus': choose 'standard-kl'" in err and len(err.strip().splitlines()) == 1
    assert main(["ablate", "--preset", "tiny", "--steps", "2", "--samples", "3"]) == 2
    assert "--samples must be >= 4" in capsys.readouterr().err


ABLATED = ["standard-kl", "+patchgan", "+patchgan-bn-reference"]
ABLATE_SAMPLES = 40


def background_jobs(items, tmp_path_factory):
    """`keras-vae ablate` of the end-to-end test in a process of its own, run ahead of the test
    (tests.support.background)."""
    import sys

    from tests.support.background import Job

    if not any(item.originalname == "test_ablate_cli_end_to_end_numbers_are_the_evaluation_functions_outputs"
               for item in items):
        return {}
    out = tmp_path_factory.mktemp("ablate")
    argv = [sys.executable, "-m", "keras_vae", "ablate", "--preset", "tiny", "--steps", "2", "--out", str(out),
            "--quiet", "--samples", str(ABLATE_SAMPLES), "--draws", "2", "--variants", ",".join(ABLATED)]
    return {"ablate": Job(argv, tmp_path_factory.mktemp("ablate-log"), out=out)}


@pytest.mark.slow
def test_ablate_cli_end_to_end_numbers_are_the_evaluation_functions_outputs(background):
    """Three variants (both bn_modes), 2 steps each: the table's FD and precision/recall are recomputed from
    the saved samples on the saved feature network, PSNR and active units from the saved model."""
    import keras
    from PIL import Image

    from keras_vae.evaluation import features as feature_lib
    from keras_vae.evaluation.image_quality import psnr_from_mse
    from keras_vae.evaluation.report import evaluation_data
    from keras_vae.evaluation.sample_quality import frechet_distance, precision_recall
    from keras_vae.evaluation.metrics import ACTIVE_UNIT_THRESHOLD

    names, n = ABLATED, ABLATE_SAMPLES
    done = background.result("ablate")  # `keras-vae ablate --preset tiny --steps 2 --out TMP --quiet --samples 40 ...`
    assert done.returncode == 0, done.stderr[-3000:]
    out, tmp_path = done.stdout, background.jobs["ablate"].out
    assert "| standard-kl | " in out and "| +patchgan-bn-reference | " in out
    report = json.loads((tmp_path / "ablation.json").read_text())
    assert list(report["variants"]) == names and report["samples"] == n and report["draws"] == 2
    feature_model, _ = feature_lib.load_feature_net(*feature_lib.run_feature_paths(tmp_path))
    config = variant_configs(get_preset("tiny"), 2, names=["standard-kl"])["standard-kl"]
    data = evaluation_data(config)
    real = feature_lib.embed(feature_model, data.real_unit)
    assert report["validation_images"] == len(data.real_unit)
    for name in names:
        row, run_dir = report["variants"][name], tmp_path / folder_name(name)
        saved = np.load(run_dir / "ablation_samples.npz")
        for section, key in (("aggregate_samples", "aggregate"), ("prior_samples", "prior")):
            draws = saved[key]
            assert draws.shape == (2, n, 16, 16, 1) and draws.min() >= 0 and draws.max() <= 1
            assert not np.array_equal(draws[0], draws[1])  # independent draws (seeds 0 and 1)
            fakes = [feature_lib.embed(feature_model, samples) for samples in draws]
            fds = [frechet_distance(real, fake) for fake in fakes]
            # the same float64 computation on the same embeddings: equal up to float64 round-off
            assert value(row, section, "frechet_distance") == pytest.approx(np.mean(fds), rel=1e-9)
            assert row[section]["frechet_distance_std"]["value"] == pytest.approx(np.std(fds, ddof=1), rel=1e-9)
            pr = [precision_recall(real, fake, k=3) for fake in fakes]
            assert value(row, section, "precision") == pytest.approx(np.mean([p for p, _ in pr]), rel=1e-12)
            assert value(row, section, "recall") == pytest.approx(np.mean([r for _, r in pr]), rel=1e-12)
        assert not np.array_equal(saved["aggregate"], saved["prior"])  # two samplers, two sample sets
        for grid in ("samples-aggregate.png", "samples-prior.png"):
            assert Image.open(run_dir / grid).size[0] > 64
        model = keras.models.load_model(run_dir / "model.keras")
        assert model.model_config.bn_mode == ("reference" if name.endswith("reference") else "batch")
        recon = np.asarray(model.to_unit(model.reconstruct(data.model_images)), np.float64)
        mse = np.mean((recon - data.real_unit) ** 2, axis=(1, 2, 3))
        # PSNR from float32 reconstructions: relative round-off of the MSE ~1e-6 -> ~1e-5 dB; batching may differ
        assert value(row, "reconstruction", "psnr") == pytest.approx(float(np.mean(psnr_from_mse(mse))), abs=1e-3)
        means = np.asarray(model.encode(data.model_images)[0], np.float64)
        assert value(row, "latent", "active_units") == int(np.sum(means.var(0) > ACTIVE_UNIT_THRESHOLD))
        sampler = json.loads((run_dir / "sampler.json").read_text())
        assert (row["sampler"]["kind"], row["sampler"]["components"]) == (sampler["kind"], len(sampler["weights"]))
    assert Image.open(tmp_path / "ablation.png").size[1] > 3 * 100  # three rows of grids
    assert "![all variants](ablation.png)" in (tmp_path / "ablation.md").read_text()


def test_tiny_preset_trains_end_to_end_through_the_cli(trained_vaegan_run):
    import keras

    out = trained_vaegan_run  # `keras-vae train --preset tiny --out RUN --quiet` exited with 0
    for name in ("model.keras", "config.json", "metrics.json", "samples.png", "reconstructions.png",
                 "interpolations.png", "traversals.png"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    diagnostics = metrics["epochs"][-1]["diagnostics"]
    assert {"disc_accuracy_real", "disc_accuracy_reconstructed", "active_units"} <= set(diagnostics)
    assert "val_loss" not in metrics["epochs"][-1]["train"] and "disc_loss" in metrics["epochs"][-1]["validation"]
    model = keras.models.load_model(out / "model.keras")
    steps = get_preset("tiny").train.steps_per_epoch
    assert int(model.g_optimizer.iterations) == steps and int(model.d_optimizer.iterations) == steps
