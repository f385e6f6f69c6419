"""Loading the Keras way: lazy top-level names, plain keras.models.load_model after `import keras_vae`,
keras_vae.load for run folders, .keras files and exports (OnnxDecoder / OnnxEncoder), one return convention."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


REPO = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def run_dir(vae_run) -> Path:
    return vae_run


@pytest.fixture(scope="module")
def export_dir(vae_export) -> Path:
    return vae_export.out


def test_import_keras_vae_imports_no_tensorflow():
    result = _python("import sys, keras_vae\n"
                     "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, sorted(sys.modules)\n"
                     "assert {'VAE', 'VAEGAN', 'load', 'train', 'OnnxDecoder', 'OnnxEncoder'} <= set(dir(keras_vae))\n"
                     "print('ok')")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize("order", ["import keras_vae, keras", "import keras, keras_vae"])
@pytest.mark.slow
def test_plain_keras_load_model_after_import_keras_vae(run_dir, order, tmp_path):
    """A fresh interpreter: nothing imports keras_vae.models, yet Keras finds the class and the outputs match."""
    from keras_vae.runs.folder import load_model

    x = np.random.default_rng(0).uniform(size=(3, 28, 28, 1)).astype("float32")
    np.save(tmp_path / "x.npy", x)
    expected = np.asarray(load_model(run_dir / "model.keras").reconstruct(x))
    code = (f"{order}, sys, numpy as np\n"
            "assert 'keras_vae.models' not in sys.modules\n"
            f"m = keras.models.load_model({str(run_dir / 'model.keras')!r})\n"
            "print(type(m).__module__, type(m).__name__)\n"
            f"y = np.asarray(m.reconstruct(np.load({str(tmp_path / 'x.npy')!r})))\n"
            f"np.save({str(tmp_path / ('y-' + order[7:12] + '.npy'))!r}, y)\n")
    result = _python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["keras_vae.models.vae", "VAE"]
    got = np.load(tmp_path / ("y-" + order[7:12] + ".npy"))
    np.testing.assert_array_equal(got, expected)  # same weights, same float32 ops, same machine


def test_lazy_top_level_names():
    import keras_vae
    from keras_vae.models import VAE, VAEGAN
    from keras_vae.training.loop import train
    from keras_vae.serving.onnx_decoder import OnnxDecoder
    from keras_vae.serving.onnx_encoder import OnnxEncoder

    assert keras_vae.VAE is VAE and keras_vae.VAEGAN is VAEGAN and keras_vae.train is train
    assert keras_vae.OnnxDecoder is OnnxDecoder and keras_vae.OnnxEncoder is OnnxEncoder
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        keras_vae.nope  # noqa: B018


def test_load_run_folder_keras_file_and_export(run_dir, export_dir):
    import keras_vae
    from keras_vae.errors import ArtifactError

    model = keras_vae.load(run_dir)
    assert isinstance(model, keras_vae.VAE)
    assert isinstance(keras_vae.load(run_dir / "model.keras"), keras_vae.VAE)
    decoder = keras_vae.load(export_dir)
    assert isinstance(decoder, keras_vae.OnnxDecoder)
    assert isinstance(keras_vae.load(export_dir / "decoder.onnx"), keras_vae.OnnxDecoder)
    encoder = keras_vae.load(export_dir / "encoder.onnx")
    assert isinstance(encoder, keras_vae.OnnxEncoder)

    z = np.random.default_rng(1).standard_normal((5, model.latent_dim)).astype("float32")
    np.testing.assert_allclose(decoder.decode(z), np.asarray(model.decode(z)), atol=1e-4)  # the export's parity bound
    x = np.random.default_rng(2).uniform(size=(5, 28, 28, 1)).astype("float32")
    mean, log_var = encoder.encode(x)
    want_mean, want_log_var = model.encode(x)
    np.testing.assert_allclose(mean, np.asarray(want_mean), atol=1e-4)
    np.testing.assert_allclose(log_var, np.asarray(want_log_var), atol=1e-4)
    pixels = (x * 255).round().astype("uint8")  # uint8 input is divided by 255
    np.testing.assert_allclose(encoder.encode(pixels)[0], np.asarray(model.encode(pixels / 255.0)[0]), atol=1e-4)
    with pytest.raises(ArtifactError, match="not an encoder"):
        keras_vae.OnnxEncoder(export_dir / "decoder.onnx")
    with pytest.raises(ArtifactError, match="does not exist"):
        keras_vae.load(run_dir / "missing")
    with pytest.raises(ArtifactError, match="neither model.keras"):
        keras_vae.load(run_dir.parent)


def test_one_return_convention_tensors(run_dir):
    """encode, reconstruct, sample, elbo and log_likelihood all return tensors (np.asarray converts)."""
    import tensorflow as tf

    import keras_vae

    model = keras_vae.load(run_dir)
    x = (np.random.default_rng(3).uniform(size=(4, 28, 28, 1)) > 0.5).astype("float32")
    outputs = [*model.encode(x), model.reconstruct(x), model.sample(2), model.elbo(x),
               model.log_likelihood(x, num_samples=3)]
    assert all(isinstance(t, tf.Tensor) for t in outputs)
    assert outputs[-1].shape == (4,) and outputs[-2].shape == (4,)


def _first_batch(dataset) -> np.ndarray:
    batch = next(iter(dataset))
    return np.asarray(batch[0] if isinstance(batch, (tuple, list)) else batch)


def test_make_datasets_from_arrays_defaults_from_array_and_model(run_dir):
    import keras_vae
    from keras_vae.data import make_datasets_from_arrays

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, 12, 10), dtype=np.uint8)
    data = make_datasets_from_arrays(images)
    batch = _first_batch(data.train)
    assert batch.shape[1:] == (12, 10, 1) and batch.min() >= 0.0 and batch.max() <= 1.0
    model = keras_vae.load(run_dir)
    data = make_datasets_from_arrays(rng.integers(0, 256, size=(50, 28, 28), dtype=np.uint8), model=model,
                                     batch_size=8)
    batch = _first_batch(data.train)
    assert batch.shape == (8, *model.image_shape)


def _main(capsys, *argv):
    from keras_vae.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_sample_accepts_an_export_folder(export_dir, tmp_path, capsys):
    from PIL import Image

    code, out, err = _main(capsys, "sample", str(export_dir), "--n", "6", "--seed", "1",
                           "--out", str(tmp_path / "g.png"))
    assert code == 0, err
    code, _, err = _main(capsys, "sample", str(export_dir / "decoder.onnx"), "--n", "6", "--seed", "1",
                         "--out", str(tmp_path / "f.png"))
    assert code == 0, err
    with Image.open(tmp_path / "g.png") as a, Image.open(tmp_path / "f.png") as b:
        assert a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))  # same decoder, same seed


def test_tfserving_command_takes_the_name_from_export_json(export_dir, tmp_path, capsys):
    import json

    name = json.loads((export_dir / "export.json").read_text())["savedmodel"]["name"]
    code, out, err = _main(capsys, "tfserving", str(export_dir), "--out", str(tmp_path / "kit"), "--versions", "1")
    assert code == 0, err
    config = (tmp_path / "kit" / "models.config").read_text()
    assert f'name: "{name}"' in config and "versions: 1" in config
    assert {"models.config", "batching_parameters.txt", "docker-compose.yml", "kubernetes.yaml"} <= {
        p.name for p in (tmp_path / "kit").iterdir()}
    code, _, err = _main(capsys, "tfserving", str(tmp_path), "--out", str(tmp_path / "kit2"))
    assert code == 2 and "has no export.json" in err and len(err.strip().splitlines()) == 1
    code, _, err = _main(capsys, "tfserving", str(export_dir), "--versions", "one")
    assert code == 2 and "--versions must be" in err


def test_evaluate_announces_its_phases(run_dir, tmp_path, capsys):
    code, out, err = _main(capsys, "evaluate", str(run_dir), "--iwae-samples", "3", "--examples", "20",
                           "--out", str(tmp_path / "e.json"))
    assert code == 0, err
    assert "IWAE estimate of log p(x) (K=3, 20 examples) ..." in out
    assert "IWAE estimate of log p(x) (K=3, 20 examples): done in" in out
    assert out.index("IWAE estimate") < out.index('"likelihood/nll"')  # announced before the results
