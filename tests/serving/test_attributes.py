"""Attribute vectors travel with the export: attributes.json holds the per-class mean codes of the run's
labelled training data, and the same edit z + alpha (mean_a - mean_b) gives the same latents in Python
(``AttributeTable.edit``), Node (``decode.js --attribute A-B:ALPHA``) and the browser explorer (its class
and strength controls), hence the same images.

The export is the session's ``gmm_export`` (tests/conftest.py): the tiny MLP VAE ``vae_run``
(latent 4) on 600 embedded MNIST digits, which have labels, with a hand-made GMM sampler. Latents are
compared exactly where the base code is the same float32 vector (the edit is one float64 expression on
the same JSON numbers, rounded once); a runtime's own sampled base code meets the run folder's within
``keras_vae.export.sampler_onnx.latent_tolerance``, and the edit moves that bound by one rounding of the result. Images from different onnxruntime builds are compared with the export's
parity tolerance (``contract.PARITY_TOLERANCE``).
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import numpy as np
import pytest

from keras_vae.export import contract
from keras_vae.applications.attributes import AttributeTable, class_means, edit_latents
from keras_vae.sampling.noise import portable_noise
from keras_vae.serving.onnx_decoder import OnnxDecoder
from tests.support.tools import NODE_DIR, drive_explorer, require_tool

D = 4
SEED = 11
A, B, ALPHA = 7, 1, 1.5  # "seven minus one", one and a half times


@pytest.fixture(scope="module")
def labelled_export(gmm_export):
    """(run_dir, export_dir, report) of the session's labelled export."""
    run, out, _, report = gmm_export
    return run, out, report


def _sampled(out, n=4, seed=SEED):
    """(the run folder's latents for ``seed``, their bound) with the export's sampler."""
    from keras_vae.export.sampler_onnx import latent_tolerance
    from keras_vae.sampling.samplers import LatentSampler

    sampler = LatentSampler.load(out / contract.SAMPLER_JSON, latent_dim=D)
    eps, u = portable_noise(seed, n, D)
    return sampler.sample(n, seed).astype(np.float32), latent_tolerance(sampler, eps, u)


# ------------------------------------------------------------------------------------ the library
def test_class_means_and_edit_match_numpy():
    rng = np.random.default_rng(0)
    codes = rng.normal(size=(50, 3))
    labels = rng.integers(2, 6, size=50)
    table = class_means(codes, labels, {"examples": 50})
    assert table.labels == tuple(sorted(set(labels.tolist())))
    for label, count in zip(table.labels, table.counts):
        assert count == np.sum(labels == label)
        np.testing.assert_array_equal(table.mean(label), codes[labels == label].mean(axis=0).astype(np.float32))
    z = rng.normal(size=(5, 3)).astype(np.float32)
    expected = (z.astype(np.float64) + 0.75 * (table.mean(3).astype(np.float64) - table.mean(5).astype(np.float64)))
    np.testing.assert_array_equal(table.edit(z, 3, 5, 0.75), expected.astype(np.float32))
    np.testing.assert_array_equal(table.edit(z[0], 3, 5, 0.0), z[0])
    # alpha 1 from the mean of b lands on the mean of a, to one float32 rounding
    moved = table.edit(table.mean(5), 3, 5, 1.0)
    assert np.all(np.abs(moved - table.mean(3)) <= np.spacing(np.abs(table.mean(3))))


def test_attribute_table_round_trips_exactly_and_refuses_bad_files(tmp_path):
    from keras_vae.errors import ArtifactError, ConfigError

    rng = np.random.default_rng(1)
    table = class_means(rng.normal(size=(30, 4)), np.repeat([0, 1, 2], 10), {"source": "test"})
    path = table.save(tmp_path / "attributes.json")
    back = AttributeTable.load(path, latent_dim=4)
    np.testing.assert_array_equal(back.means, table.means)  # float32 values written exactly
    assert back.labels == table.labels and back.counts == table.counts and back.fitted_on == {"source": "test"}
    with pytest.raises(ArtifactError, match="latent dimension 4 but the model has 8"):
        AttributeTable.load(path, latent_dim=8)
    data = json.loads(path.read_text())
    data["classes"][1]["mean"] = data["classes"][1]["mean"][:3]
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match="means must be finite"):
        AttributeTable.load(tmp_path / "short.json")
    with pytest.raises(ConfigError, match=r"no class 9 .*classes: 0, 1, 2"):
        back.edit(np.zeros(4), 9, 0, 1.0)
    with pytest.raises(ConfigError, match="at least two classes"):
        class_means(np.zeros((3, 2)), np.zeros(3, int))
    with pytest.raises(ConfigError, match="finite"):
        edit_latents(np.zeros(2), np.ones(2), np.zeros(2), float("nan"))


def test_fit_attributes_without_labels_gives_a_reason(tmp_path):
    import dataclasses

    from keras_vae.applications.attributes import fit_attributes
    from keras_vae.data.config import DataConfig

    np.save(tmp_path / "x.npy", np.zeros((20, 28, 28), np.uint8))
    config = dataclasses.replace(DataConfig(), source=f"npy:{tmp_path / 'x.npy'}")
    reason = fit_attributes(model=None, data_config=config)  # never reaches the model
    assert isinstance(reason, str) and "has no labels" in reason


# ------------------------------------------------------------------------------------- the export
def test_export_writes_listed_class_means(labelled_export):
    import keras

    from keras_vae.applications.encoding import encode_examples
    from keras_vae.data import load_source
    from keras_vae.data.examples import iterate_examples
    from keras_vae.runs.folder import load_run

    run, out, report = labelled_export
    path = out / contract.ATTRIBUTES_JSON
    entry = report["files"][contract.ATTRIBUTES_JSON]
    assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and entry["bytes"] == path.stat().st_size
    table = AttributeTable.load(path, latent_dim=D)
    assert report["attributes"]["file"] == "attributes.json"
    assert report["attributes"]["classes"] == list(table.labels) == list(range(10))
    assert sum(table.counts) == table.fitted_on["examples"] == report["attributes"]["fitted_on"]["examples"]
    # the means are those of the run's own training split, encoded as in training (binarized)
    config, model = load_run(run)
    keras.utils.set_random_seed(0)
    codes = encode_examples(model, iterate_examples(load_source(config.data), image_shape=model.image_shape,
                                                    value_range=model.value_range, split="train", binarize=True))
    assert table.fitted_on["binarized"] and len(codes.index) == sum(table.counts)
    for label in table.labels:
        reference = codes.mean[codes.labels == label].astype(np.float64).mean(axis=0)
        # the same codes (same batches): only the float32 rounding of the stored mean differs
        assert np.all(np.abs(table.mean(label) - reference) <= np.spacing(np.abs(reference).astype(np.float32)))


def _python_images(out, z):
    return OnnxDecoder(out).decode(np.asarray(z, np.float32))


def test_python_edit_decodes_like_keras(labelled_export):
    import tensorflow as tf

    from keras_vae.runs.folder import load_model

    run, out, _ = labelled_export
    table = AttributeTable.load(out / contract.ATTRIBUTES_JSON, latent_dim=D)
    base = _sampled(out)[0]
    z = table.edit(base, A, B, ALPHA)
    model = load_model(run / "model.keras")
    keras_images = model.to_unit(model.decode(tf.constant(z))).numpy()
    np.testing.assert_allclose(_python_images(out, z), keras_images, atol=contract.PARITY_TOLERANCE, rtol=0)
    # the edit is visible: seven-minus-one changes the picture
    assert np.abs(_python_images(out, z) - _python_images(out, base)).max() > 0.01


@pytest.mark.slow
def test_node_attribute_option_matches_python(labelled_export, tmp_path):
    require_tool(shutil.which("node") is not None, "node is not installed (apt-get install nodejs)")
    require_tool((NODE_DIR / "node_modules" / "onnxruntime-node").is_dir(),
                 f"{NODE_DIR}/node_modules is missing: run serving/install_test_deps.sh")
    _, out, _ = labelled_export
    table = AttributeTable.load(out / contract.ATTRIBUTES_JSON, latent_dim=D)
    base, tolerance = _sampled(out)
    (tmp_path / "z.json").write_text(json.dumps(base.tolist()))  # float32 values, written exactly
    cmd = ["node", str(NODE_DIR / "decode.js"), "--model", str(out / contract.DECODER_ONNX), "--latents",
           str(tmp_path / "z.json"), "--attribute", f"{A}-{B}:{ALPHA}", "--out-dir", str(tmp_path / "png"),
           "--latents-out", str(tmp_path / "edited.json"), "--float-out", str(tmp_path / "images.bin")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["attribute"] == {"a": A, "b": B, "alpha": ALPHA, "file": str(out / contract.ATTRIBUTES_JSON)}
    expected = table.edit(base, A, B, ALPHA)
    node_z = np.asarray(json.loads((tmp_path / "edited.json").read_text()), np.float32)
    np.testing.assert_array_equal(node_z, expected)  # same float64 expression on the same numbers
    images = np.fromfile(tmp_path / "images.bin", "<f4").reshape(4, 28, 28, 1)
    assert np.abs(images - _python_images(out, expected)).max() <= contract.PARITY_TOLERANCE
    # --sample draws, then edits: row 0 of seed S is the browser grid's first code
    proc = subprocess.run(cmd[:4] + ["--sample", "2", "--seed", str(SEED)] + cmd[6:], capture_output=True, text=True,
                          timeout=90)
    assert proc.returncode == 0, proc.stderr
    sampled = np.asarray(json.loads((tmp_path / "edited.json").read_text()), np.float32)
    assert np.all(np.abs(sampled - expected[:2]) <= tolerance[:2] + np.spacing(np.abs(expected[:2])))
    # bad specifications: one line, exit 2
    for spec, message in (("7-1", "must look like A-B:ALPHA"), ("7-1:inf", "must look like A-B:ALPHA"),
                          ("42-1:1", "no class 42 in the attribute table (classes: 0, 1, 2")):
        bad = subprocess.run(cmd[:6] + ["--attribute", spec, "--out-dir", str(tmp_path / "x")],
                             capture_output=True, text=True, timeout=60)
        assert bad.returncode == 2 and message in bad.stderr, (spec, bad.stderr)
        assert len(bad.stderr.strip().splitlines()) == 1 or "usage" in bad.stderr
    missing = subprocess.run(cmd[:6] + ["--attribute", "1-2:1", "--attributes", str(tmp_path / "none.json"),
                                        "--out-dir", str(tmp_path / "x")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "attribute file not found" in missing.stderr


@pytest.mark.slow
def test_browser_attribute_controls_match_python(labelled_export, tmp_path):
    _, out, _ = labelled_export
    table = AttributeTable.load(out / contract.ATTRIBUTES_JSON, latent_dim=D)
    report = drive_explorer(out, f"seed={SEED}&n=4", "--attribute", f"{A}-{B}:{ALPHA}")
    attribute = report["attribute"]
    assert attribute["labels"] == list(range(10)) and attribute["controls_visible"] and attribute["alpha"] == ALPHA
    page_base = np.asarray(report["last_sample"]["z"][0], np.float32)  # the selected grid code
    reference, tolerance = _sampled(out)
    assert np.all(np.abs(page_base - reference[0]) <= tolerance[0])
    edited = np.asarray(attribute["edited"]["z"], np.float32)
    np.testing.assert_array_equal(edited, table.edit(page_base, A, B, ALPHA))  # the library's edit, exactly
    expected = table.edit(reference[0], A, B, ALPHA)
    assert np.all(np.abs(edited - expected) <= tolerance[0] + np.spacing(np.abs(expected)))
    image = np.asarray(attribute["edited"]["image"]["data"], np.float32).reshape(1, 28, 28, 1)
    assert np.abs(image - _python_images(out, edited[None])).max() <= contract.PARITY_TOLERANCE
    np.testing.assert_array_equal(np.asarray(attribute["class_mean"]["z"], np.float32), table.mean(A))


@pytest.mark.slow
def test_no_attributes_export_has_no_file_and_removes_a_stale_one(labelled_export, tmp_path):
    """--no-attributes (the path of a run without labels): no attributes.json, a re-export removes a stale one."""
    from keras_vae.export.exporter import export_run

    run, out, _ = labelled_export
    copy = tmp_path / "exp"
    shutil.copytree(out, copy)
    report = export_run(run, copy, force=True, attributes=False)
    assert not (copy / contract.ATTRIBUTES_JSON).exists()
    assert contract.ATTRIBUTES_JSON not in report["files"]
    assert report["attributes"] == {"file": None, "reason": "not requested (--no-attributes)"}
