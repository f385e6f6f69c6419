"""The scalar-input ``sample`` / ``sample_uint8`` signatures through the TF Serving clients and the kit's warmup.

``tensorflow_model_server`` cannot be installed here, so the clients talk to the contract servers
(serving/contract_server.py: the SavedModel loaded with tf.saved_model.load behind TF Serving's documented
REST and gRPC APIs), and every answer is compared with the SavedModel called in-process and with the run
folder's sampler (``LatentSampler.sample``, within ``keras_vae.export.sampler_onnx.latent_tolerance``). The export is
the session's ``gmm_export`` (tests/conftest.py), whose 3-component GMM makes the latents depend on
the component choice, the means and the Cholesky factors.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from keras_vae.export import contract
from keras_vae.export.sampler_onnx import latent_tolerance
from keras_vae.sampling.noise import portable_noise
from keras_vae.serving.client import InputShapeError, SignatureNotFoundError, TFServingClient, TFServingGrpcClient
from keras_vae.serving.contract_server import ContractServer, GrpcContractServer, ModelRepository

D = 4
N, SEED = 5, 9


@pytest.fixture(scope="module")
def served(gmm_export):
    """(export_dir, sampler, REST url, gRPC target, the SavedModel loaded in-process)."""
    import tensorflow as tf

    _, out, sampler, _ = gmm_export
    base = out / contract.SAVEDMODEL_DIR / "vae"
    repo = ModelRepository({"vae": base})
    with ContractServer(repo) as rest, GrpcContractServer(repo, max_workers=2) as grpc_server:
        yield out, sampler, rest.url, grpc_server.target, tf.saved_model.load(str(base / "1"))


def _direct(loaded, signature, n, seed):
    import tensorflow as tf

    out = loaded.signatures[signature](n=tf.constant(n, tf.int32), seed=tf.constant(seed, tf.int64))
    return out["image"].numpy(), out["z"].numpy()


def _clients(url, target):
    grpc_client = TFServingGrpcClient(target, "vae")
    return [("REST", TFServingClient(url, "vae")), ("REST without metadata", TFServingClient(url, "vae", validate=False)),
            ("gRPC", grpc_client)]


def test_sample_through_every_client_matches_the_savedmodel_and_the_run(served):
    out, sampler, url, target, loaded = served
    eps, u = portable_noise(SEED, N, D)
    reference, bound = sampler.sample(N, SEED), latent_tolerance(sampler, eps, u)
    want_images, want_z = _direct(loaded, "sample", N, SEED)
    want_uint8, _ = _direct(loaded, "sample_uint8", N, SEED)
    for name, client in _clients(url, target):
        images, z = client.sample(N, SEED)
        assert images.dtype == np.float32 and images.shape == (N, 28, 28, 1), name
        assert z.dtype == np.float32 and z.shape == (N, D), name
        np.testing.assert_array_equal(z, want_z)  # float32 numbers survive JSON and protobuf exactly
        np.testing.assert_array_equal(images, want_images)
        assert np.all(np.abs(z.astype(np.float64) - reference) <= bound), name
        as_uint8, z8 = client.sample(N, SEED, uint8=True)
        assert as_uint8.dtype == np.uint8, name
        np.testing.assert_array_equal(as_uint8, want_uint8)
        np.testing.assert_array_equal(z8, want_z)
    # another seed, other latents; a longer draw starts with the same codes
    rest = TFServingClient(url, "vae")
    assert np.abs(rest.sample(N, SEED + 1)[1] - want_z).max() > 0.1
    np.testing.assert_array_equal(rest.sample(N + 3, SEED)[1][:N], want_z)


def test_sample_rejects_bad_arguments_before_sending(served):
    out, _, url, target, _ = served
    client = TFServingClient(url, "vae")
    for kwargs, message in (({"n": 0}, r"n must be an integer in \[1, 1024\]"),
                            ({"n": 2.0}, "n must be an integer"), ({"n": True}, "n must be an integer"),
                            ({"n": 1025}, "split larger draws"),
                            ({"n": 2, "seed": -1}, r"seed must be an integer in \[0, 4294967295\]"),
                            ({"n": 2, "seed": 2 ** 32}, "seed must be an integer")):
        with pytest.raises(InputShapeError, match=message):
            client.sample(**kwargs)


def test_sample_on_a_savedmodel_without_the_sampler_signatures(tmp_path):
    """Exports older than the sampler signatures: a clear error naming the signatures the model has."""
    from tests.support.tfserving import TEST_MODEL_NAME, build_test_savedmodel

    build_test_savedmodel(tmp_path, TEST_MODEL_NAME, 1)
    with ContractServer({TEST_MODEL_NAME: tmp_path / contract.SAVEDMODEL_DIR / TEST_MODEL_NAME}) as server:
        with pytest.raises(SignatureNotFoundError, match="has no signature 'sample'; it has: decode_uint8, encode"):
            TFServingClient(server.url, TEST_MODEL_NAME).sample(2, 0)


# ----------------------------------------------------------------------------- the kit's warmup records
def test_kit_warmup_covers_the_sample_signatures(gmm_export, tmp_path):
    """keras_vae.serving.tfserving.write_warmup_requests writes sample/sample_uint8 records (scalar n, seed) for an
    export that has them; the records parse, and replayed over gRPC they give what the SavedModel gives."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    from keras_vae.errors import ArtifactError
    from keras_vae.serving.tfserving import read_warmup_requests, write_warmup_requests
    from keras_vae.serving.tfserving.warmup import savedmodel_signatures

    _, out, _, _ = gmm_export
    base = tmp_path / "savedmodel" / "vae"
    shutil.copytree(out / contract.SAVEDMODEL_DIR / "vae" / "1", base / "1")
    assert savedmodel_signatures(base / "1") == sorted(contract.SIGNATURES + contract.SAMPLE_SIGNATURES)
    path = write_warmup_requests(base / "1", D, (28, 28, 1), batch_sizes=(1, 3), seed=5)
    requests = read_warmup_requests(path)
    order = [(r.model_spec.signature_name, b) for r in requests
             for b in [int(tf.make_ndarray(r.inputs["n"])) if "n" in r.inputs else
                       next(iter(r.inputs.values())).tensor_shape.dim[0].size]]
    assert order == [(s, b) for s in contract.SIGNATURES + contract.SAMPLE_SIGNATURES for b in (1, 3)]
    sample_records = [r for r in requests if r.model_spec.signature_name in contract.SAMPLE_SIGNATURES]
    assert len(sample_records) == 4
    loaded = tf.saved_model.load(str(base / "1"))
    with GrpcContractServer(ModelRepository({"vae": base}), max_workers=2) as server, \
            grpc.insecure_channel(server.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for record in sample_records:
            assert set(record.inputs) == {"n", "seed"}
            n, seed = (tf.make_ndarray(record.inputs[k]) for k in ("n", "seed"))
            assert n.shape == () and n.dtype == np.int32 and seed.shape == () and seed.dtype == np.int64 and seed == 5
            want_images, want_z = _direct(loaded, record.model_spec.signature_name, int(n), int(seed))
            response = stub.Predict(record, timeout=30)  # the record as TF Serving replays it
            np.testing.assert_array_equal(tf.make_ndarray(response.outputs["z"]), want_z)
            np.testing.assert_array_equal(tf.make_ndarray(response.outputs["image"]), want_images)
            assert want_images.shape[0] == int(n)
    # a signature the SavedModel lacks is refused: TF Serving would not load such a version
    from tests.support.tfserving import build_test_savedmodel

    old = build_test_savedmodel(tmp_path / "old", "tinyvae", 1)
    write_warmup_requests(old, 4, (16, 16, 1))  # default: only the four signatures it has
    assert {r.model_spec.signature_name for r in read_warmup_requests(old)} == set(contract.SIGNATURES)
    with pytest.raises(ArtifactError, match="has no signature 'sample'"):
        write_warmup_requests(old, 4, (16, 16, 1), signatures=("serving_default", "sample"))
