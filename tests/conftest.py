"""Shared test settings (quiet TensorFlow, few threads: CI has 2 cores) and the session's trained models.

Each session fixture below trains or exports once per test run; the folders they return are read-only
(a check at the end of the session fails if a test changed one): a test that changes a run or an export
copies it first (``tests.support.runs.copy_run``, or the ``export_copy`` fixture). Helpers live in
tests/support/; test modules import nothing from each other or from a conftest.

    vae_run            tiny-vae (MLP, latent 4) fitted one short epoch: model.keras + config.json only
    vae_export         vae_run exported (SavedModel, ONNX, float16 and int8 decoders): .run, .out, .report
    gmm_export         vae_run with a hand-made 3-component GMM sampler.json, exported: (run, out, sampler, report)
    trained_vae_run    `keras-vae train --preset tiny-vae --seed 3`: a whole run folder (metrics, samplers, figures)
    trained_vaegan_run `keras-vae train --preset tiny`: the paper's model, a whole run folder
    decoder_dir        a random-init conv decoder.onnx (latent 8, 28x28x1) + export.json, no TensorFlow model
    tfs_export         a SavedModel 'tinyvae' (versions 1 and 2, random init) in TF Serving's layout
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "2")

try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # a test extra: only the property tests need it
    pass
else:  # the same examples on every run and machine: no random seed, no example database
    _hypothesis_settings.register_profile("keras-vae", derandomize=True, database=None)
    _hypothesis_settings.load_profile("keras-vae")

import contextlib  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.support.runs import Exported, make_test_run, snapshot  # noqa: E402


@contextlib.contextmanager
def read_only(*paths: Path):
    """Around the session's use of ``paths``: fail at the end if a test changed, added or removed a file."""
    before = [snapshot(p) for p in paths]
    yield
    for path, old in zip(paths, before):
        new = snapshot(path)
        changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
        assert not changed, f"a test changed the session folder {path} (copy it first): {changed[:10]}"


@pytest.fixture(scope="session")
def vae_run(tmp_path_factory):
    run = make_test_run(tmp_path_factory.mktemp("run-mlp"), "tiny-vae")
    with read_only(run):
        yield run


@pytest.fixture(scope="session")
def vae_export(vae_run, tmp_path_factory):
    from keras_vae.export.exporter import export_run

    out = tmp_path_factory.mktemp("export-mlp") / "exp"
    report = export_run(vae_run, out, float16=True, quantize=True)
    with read_only(out):
        yield Exported(vae_run, out, report)


@pytest.fixture(scope="session")
def gmm_export(vae_run, tmp_path_factory):
    """(run_dir, export_dir, sampler, report): ``vae_run`` with ``hand_made_gmm_sampler`` as its sampler.json,
    exported (the run's data config is the embedded MNIST digits, which have labels)."""
    from keras_vae.export import contract
    from keras_vae.export.exporter import export_run
    from tests.support.decoders import hand_made_gmm_sampler

    run = tmp_path_factory.mktemp("run-gmm") / "run-gmm"
    shutil.copytree(vae_run, run)
    sampler = hand_made_gmm_sampler()
    sampler.save(run / contract.SAMPLER_JSON)
    out = tmp_path_factory.mktemp("export-gmm") / "exp"
    report = export_run(run, out)
    with read_only(run, out):
        yield run, out, sampler, report


def _cli_train(out: Path, *argv: str) -> Path:
    from keras_vae.cli import main

    assert main(["train", *argv, "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture(scope="session")
def trained_vae_run(tmp_path_factory):
    run = _cli_train(tmp_path_factory.mktemp("trained-vae") / "run", "--preset", "tiny-vae", "--seed", "3")
    with read_only(run):
        yield run


@pytest.fixture(scope="session")
def trained_vaegan_run(tmp_path_factory):
    run = _cli_train(tmp_path_factory.mktemp("trained-vaegan") / "run", "--preset", "tiny")
    with read_only(run):
        yield run


@pytest.fixture(scope="session")
def decoder_dir(tmp_path_factory):
    """A read-only export folder with decoder.onnx and export.json (copy it before changing it)."""
    from tests.support.decoders import build_test_decoder

    d = tmp_path_factory.mktemp("export")
    build_test_decoder(d)
    with read_only(d):
        yield d


@pytest.fixture(scope="session")
def decoder_path(decoder_dir):
    from keras_vae.export import contract

    return decoder_dir / contract.DECODER_ONNX


@pytest.fixture
def export_copy(decoder_dir, tmp_path):
    """A private copy of ``decoder_dir`` that a test may modify."""
    d = tmp_path / "export"
    shutil.copytree(decoder_dir, d)
    return d


@pytest.fixture(scope="session")
def tfs_export(tmp_path_factory):
    """An export folder with versions 1 (seed 0) and 2 (seed 1) of the SavedModel ``tinyvae``."""
    from tests.support.tfserving import TEST_MODEL_NAME, build_test_savedmodel

    export_dir = tmp_path_factory.mktemp("tfs_export")
    build_test_savedmodel(export_dir, TEST_MODEL_NAME, 1, seed=0)
    build_test_savedmodel(export_dir, TEST_MODEL_NAME, 2, seed=1)
    with read_only(export_dir):
        yield export_dir


@pytest.fixture(scope="session")
def tfs_loaded(tfs_export):
    """``{version: tf.saved_model.load(...)}`` of ``tfs_export``."""
    import tensorflow as tf

    from keras_vae.export import contract
    from tests.support.tfserving import TEST_MODEL_NAME

    base = tfs_export / contract.SAVEDMODEL_DIR / TEST_MODEL_NAME
    return {v: tf.saved_model.load(str(base / str(v))) for v in (1, 2)}
