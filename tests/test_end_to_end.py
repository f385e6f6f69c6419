"""The whole data flow on a trained run: train (CLI) -> export (CLI) -> onnxruntime, Node-free ONNX
sampling without TensorFlow, and the TF Serving REST client against the contract server."""
import json
import subprocess
import sys

import numpy as np
import pytest

from keras_vae.cli import main
from keras_vae.runs.folder import load_run


@pytest.fixture(scope="module")
def exported(trained_vae_run, tmp_path_factory):
    """The session's `keras-vae train --preset tiny-vae` run, exported by `keras-vae export --name digits`."""
    out = tmp_path_factory.mktemp("e2e") / "export"
    assert main(["export", str(trained_vae_run), "--out", str(out), "--name", "digits"]) == 0
    return trained_vae_run, out


def test_onnx_decoder_matches_the_trained_keras_model(exported):
    from keras_vae.serving.onnx_decoder import OnnxDecoder

    run, out = exported
    _, model = load_run(run)
    decoder = OnnxDecoder(out / "decoder.onnx")
    z = np.random.default_rng(0).normal(size=(7, model.latent_dim)).astype(np.float32)
    np.testing.assert_allclose(decoder.decode(z), np.asarray(model.to_unit(model.decode(z))), atol=1e-5)
    report = json.loads((out / "export.json").read_text())
    assert report["files"]["decoder.onnx"]["sha256"]


@pytest.mark.slow
def test_sample_from_onnx_runs_without_tensorflow(exported, tmp_path):
    _, out = exported
    png = tmp_path / "grid.png"
    code = (f"import sys; from keras_vae.cli import main; "
            f"rc = main(['sample', {str(out / 'decoder.onnx')!r}, '--n', '4', '--out', {str(png)!r}]); "
            f"assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'; sys.exit(rc)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    from PIL import Image

    with Image.open(png) as image:
        assert image.size == (2 * 28, 2 * 28)


def test_tf_serving_rest_client_on_the_exported_savedmodel(exported):
    from keras_vae.serving.client import TFServingClient
    from keras_vae.serving.contract_server import ContractServer

    run, out = exported
    _, model = load_run(run)
    images = np.random.default_rng(1).uniform(size=(3, 28, 28, 1)).astype(np.float32)
    with ContractServer({"digits": out / "savedmodel" / "digits"}) as server:
        client = TFServingClient(server.url, "digits", timeout=30)
        mean, log_var = client.encode(images)
        expected_mean, expected_log_var = model.encode(model.from_unit(images))
        np.testing.assert_allclose(mean, expected_mean, atol=1e-4)
        np.testing.assert_allclose(log_var, expected_log_var, atol=1e-4)
        np.testing.assert_allclose(client.decode(mean), np.asarray(model.to_unit(model.decode(mean))), atol=1e-5)


@pytest.mark.slow
def test_a_vaegan_run_loads_in_a_fresh_process(trained_vaegan_run, tmp_path):
    """evaluate/sample/export load model.keras in a new process: the VAEGAN class must be registered."""
    run = trained_vaegan_run  # `keras-vae train --preset tiny`
    result = subprocess.run([sys.executable, "-m", "keras_vae", "sample", str(run), "--n", "4",
                             "--out", str(tmp_path / "s.png")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "s.png").is_file()
