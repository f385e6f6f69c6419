"""``n`` and ``seed`` of the sample signatures are bounded everywhere a latent sampler is called.

The SavedModel's ``sample`` / ``sample_uint8`` assert ``1 <= n <= MAX_BATCH`` (1024) and ``0 <= seed < 2^32``
inside the graph, ahead of every op sized by ``n``, so TF Serving refuses ``{"n": 5000}`` (and the in-process
``n = 10^7`` that used to allocate a [10^7, 784] float tensor) with a message naming the input. The contract
server answers such requests 400 with that message (it answered "Graph execution error:" and nothing more)
and refuses non-integer ``n`` (1.5 was silently 1). sampler.onnx callers apply the same bound: OnnxDecoder
runs sampler.onnx on at most max_batch codes per call, the Node decoder and the browser explorer refuse
``n`` outside [1, 1024] and seeds outside [0, 2^32) before drawing.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.error
import urllib.request

import numpy as np
import pytest

from keras_vae.export import contract
from keras_vae.serving.contract_server import graph_error_message
from tests.support.tools import NODE_DIR, REPO_ROOT, WEB_DIR, require_tool

N_IS = "input n, the number of images of one request, is an integer in [1, 1024]"
N_LOW = f"sample: n must be >= 1 ({N_IS})"
N_HIGH = f"sample: n must be <= 1024 ({N_IS}: split larger draws into requests with different seeds)"
SEED_LOW = "sample: seed must be >= 0 (input seed is an integer in [0, 2^32))"
SEED_HIGH = "sample: seed must be < 2^32 (input seed is an integer in [0, 2^32))"


# ------------------------------------------------------------------------------------------- fast
def test_graph_errors_become_one_line_naming_the_input():
    """What tf.saved_model signatures raise for a failed assertion, and for any other graph error."""
    assertion = ("Graph execution error:\n\nDetected at node assert_less_equal/Assert/Assert defined at (most recent "
                 "call last):\n<stack traces unavailable>\nassertion failed: [sample: n must be <= 1024 (input n is "
                 "the number of images of one request)] [Condition x <= y did not hold element-wise:] [x (n:0) = ] "
                 "[5000] [y (Const_1:0) = ] [1024]\n\t [[{{node assert_less_equal/Assert/Assert}}]] "
                 "[Op:__inference_signature_wrapper_sample_7409]")
    assert graph_error_message(ValueError(assertion)) == (
        "sample: n must be <= 1024 (input n is the number of images of one request); got n = 5000")
    other = ("Graph execution error:\n\nDetected at node GatherV2 defined at (most recent call last):\n<stack traces "
             "unavailable>\nindices[0] = 7 is not in [0, 3)\n\t [[{{node GatherV2}}]] [Op:__inference_f_12]")
    assert graph_error_message(ValueError(other)) == "indices[0] = 7 is not in [0, 3)"
    assert graph_error_message(ValueError("")) == "ValueError"


def test_sample_limit_and_the_javascript_bound_are_the_contract_max_batch():
    from keras_vae.export.sampler_tf import sample_limit

    assert sample_limit(4) == sample_limit(512) == contract.MAX_BATCH == 1024
    assert sample_limit(2**22) == 2**32 // (2**23 + 1)  # one seed's 2^32 counters still bound huge latents
    text = (NODE_DIR / "noise.js").read_text()
    assert re.search(r"const MAX_BATCH = (\d+);", text).group(1) == str(contract.MAX_BATCH)


def test_savedmodel_sample_functions_refuse_bad_n_and_seed_before_drawing():
    """The signatures' tf.functions on a stand-in decoder: n = 10^7 is refused (it would need a [10^7, 2d + 1]
    counter tensor and a [10^7, 8] image batch), n = 1024 is drawn."""
    import keras
    import tensorflow as tf

    from keras_vae.export.sampler_tf import make_sample_functions
    from keras_vae.sampling.samplers import prior_sampler

    class StandIn:
        latent_dim = 4
        net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8)])

        def decode(self, z, training=False):
            return self.net(z, training=training)

        def to_unit(self, x):
            return tf.sigmoid(x)

    sample, _ = make_sample_functions(StandIn(), prior_sampler(4))["sample"]
    out = sample(tf.constant(1024, tf.int32), tf.constant(0, tf.int64))
    assert out["image"].shape == (1024, 8) and out["z"].shape == (1024, 4)
    for n, seed, message, value in ((0, 0, N_LOW, "n = 0"), (1025, 0, N_HIGH, "n = 1025"),
                                    (10**7, 0, N_HIGH, "n = 10000000"), (-5, 0, N_LOW, "n = -5"),
                                    (2, -1, SEED_LOW, "seed = -1"), (2, 2**32, SEED_HIGH, "seed = 4294967296")):
        with pytest.raises(tf.errors.InvalidArgumentError) as info:
            sample(tf.constant(n, tf.int32), tf.constant(seed, tf.int64))
        assert graph_error_message(info.value) == f"{message}; got {value}"


def _node_ready():
    require_tool(shutil.which("node") is not None, "node is not installed (apt-get install nodejs)")
    require_tool((NODE_DIR / "node_modules" / "onnxruntime-node").is_dir(),
                 f"{NODE_DIR}/node_modules is missing: run serving/install_test_deps.sh")


def test_node_refuses_bad_counts_and_seeds_before_drawing(tmp_path):
    _node_ready()
    script = """
const { loadSampler, DecoderError } = require(%s);
const noise = require(%s);
(async () => {
  const prior = await loadSampler(null, 4);
  const out = {};
  for (const [n, seed] of [[0, 1], [1025, 1], [1.5, 1], [2, -1], [2, 4294967296], [2, 0.5]]) {
    try { await prior.latents(n, seed); out[`${n},${seed}`] = 'drawn'; }
    catch (e) { out[`${n},${seed}`] = `${e instanceof DecoderError ? 'DecoderError' : e.name}: ${e.message}`; }
  }
  out.ok = (await prior.latents(1024, 7)).shape;
  out.max = noise.MAX_BATCH;
  console.log(JSON.stringify(out));
})();
""" % (json.dumps(str(NODE_DIR / "decoder.js")), json.dumps(str(NODE_DIR / "noise.js")))
    proc = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ok"] == [1024, 4] and out["max"] == 1024
    for key in ("0,1", "1025,1", "1.5,1"):
        assert out[key] == f"DecoderError: n must be an integer in [1, 1024] (samples per call; draw more with several " \
                           f"seeds), got {key.split(',')[0]}", out[key]
    for key in ("2,-1", "2,4294967296", "2,0.5"):
        assert out[key].startswith("DecoderError: seed must be an integer in [0, 2^32)"), out[key]
    # the CLI checks --sample and --seed before loading anything (the model file need not exist)
    for flag, value, message in (("--sample", "1025", "--sample must be an integer >= 1 and <= 1024"),
                                 ("--sample", "0", "--sample must be an integer >= 1 and <= 1024"),
                                 ("--sample", "1.5", "--sample must be an integer >= 1 and <= 1024 (images per run), got 1.5"),
                                 ("--seed", "4294967296", "--seed must be an integer >= 0 and <= 4294967295"),
                                 ("--seed", "-3", "--seed must be an integer >= 0")):
        args = {"--sample": "2", "--seed": "0", flag: value}
        proc = subprocess.run(["node", str(NODE_DIR / "decode.js"), "--model", str(tmp_path / "none.onnx"),
                               "--out-dir", str(tmp_path / "out"), *[x for kv in args.items() for x in kv]],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr, (flag, value, proc.stderr)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------- slow
def _post(url: str, body: dict):
    request = urllib.request.Request(f"{url}/v1/models/vae:predict", json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@pytest.mark.slow
def test_contract_server_answers_bad_sample_inputs_with_400_naming_the_input(gmm_export):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from keras_vae.serving.contract_server import ContractServer, GrpcContractServer, ModelRepository

    _, out, _, _ = gmm_export
    base = out / contract.SAVEDMODEL_DIR / "vae"
    loaded = tf.saved_model.load(str(base / "1"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="n must be <= 1024"):  # in-process: 31 GB before
        loaded.signatures["sample"](n=tf.constant(10**7, tf.int32), seed=tf.constant(0, tf.int64))
    repo = ModelRepository({"vae": base})
    with ContractServer(repo) as rest, GrpcContractServer(repo, max_workers=1) as grpc_server:
        for signature in contract.SAMPLE_SIGNATURES:
            for inputs, message in (({"n": 0, "seed": 0}, f"{N_LOW}; got n = 0"),
                                    ({"n": 5000, "seed": 0}, f"{N_HIGH}; got n = 5000"),
                                    ({"n": 1.5, "seed": 0}, "input 'n' must be an integer (int32), got 1.5"),
                                    ({"n": 2.0, "seed": 0}, "input 'n' must be an integer (int32), got 2.0"),
                                    ({"n": True, "seed": 0}, "input 'n' must be an integer (int32), got true"),
                                    ({"n": "3", "seed": 0}, "input 'n' must be an integer (int32), got \"3\""),
                                    ({"n": 2, "seed": -1}, f"{SEED_LOW}; got seed = -1"),
                                    ({"n": 2, "seed": 2**32}, f"{SEED_HIGH}; got seed = 4294967296"),
                                    ({"n": 2, "seed": 0.5}, "input 'seed' must be an integer (int64), got 0.5")):
                status, reply = _post(rest.url, {"signature_name": signature, "inputs": inputs})
                assert status == 400 and message in reply["error"], (signature, inputs, reply)
                assert "Graph execution error" not in reply["error"]
            status, reply = _post(rest.url, {"signature_name": signature, "inputs": {"n": 1024, "seed": 3}})
            assert status == 200 and np.asarray(reply["outputs"]["z"]).shape == (1024, 4)
        with grpc.insecure_channel(grpc_server.target) as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for n, message in ((np.int32(5000), f"{N_HIGH}; got n = 5000"),
                               (np.float32(1.5), "input 'n' must hold integers (int32), got an array of float32")):
                request = predict_pb2.PredictRequest()
                request.model_spec.name, request.model_spec.signature_name = "vae", "sample"
                request.inputs["n"].CopyFrom(tf.make_tensor_proto(n))
                request.inputs["seed"].CopyFrom(tf.make_tensor_proto(np.int64(0)))
                with pytest.raises(grpc.RpcError) as info:
                    stub.Predict(request, timeout=60)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in info.value.details()


@pytest.mark.slow
def test_onnx_decoder_runs_sampler_onnx_in_max_batch_pieces(gmm_export):
    from keras_vae.serving.onnx_decoder import OnnxDecoder

    _, out, _, _ = gmm_export
    whole = OnnxDecoder(out).sample_latents(10, seed=4)
    small = OnnxDecoder(out, max_batch=3)
    rows = []
    run = small._sampler.run
    small._sampler = type("Recorder", (), {"run": lambda self, names, feeds: rows.append(len(feeds["u"])) or run(names, feeds)})()
    np.testing.assert_array_equal(small.sample_latents(10, seed=4), whole)  # row-wise: the same latents
    assert rows == [3, 3, 3, 1]


@pytest.mark.slow
def test_explorer_refuses_a_bad_grid_size_or_seed(decoder_dir):
    import os

    from keras_vae.serving.demo import make_server, serve_in_thread, server_url

    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    require_tool(os.path.exists(chromium), f"{chromium} not found: apt-get install -y chromium")
    require_tool((WEB_DIR / "node_modules" / "playwright-core").is_dir(), "playwright-core missing: npm ci in serving/web")
    server = make_server(decoder_dir, port=0)
    serve_in_thread(server)
    try:
        for query, message in (("n=1000", 'n must be an integer in [1, 256], got "1000"'),
                               ("n=2.5", 'n must be an integer in [1, 256], got "2.5"'),
                               ("seed=-1", 'seed must be an integer in [0, 4294967295], got "-1"')):
            proc = subprocess.run(["node", str(WEB_DIR / "drive.mjs"), "--url", f"{server_url(server)}?{query}"],
                                  capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
            assert proc.returncode == 0, proc.stderr[-3000:]
            report = json.loads(proc.stdout)
            assert report["state"] == "error" and message in report["status"], (query, report)
    finally:
        server.shutdown()
        server.server_close()
