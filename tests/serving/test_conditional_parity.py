"""One (seed, label) gives the same latents and images in every runtime of a class-conditional export: the run
(class label's sampler and ``model.decode(z, labels=label)``, which is ``model.sample(n, seed, label=)`` for a class
without a sampler), the SavedModel behind TF Serving's REST API (``TFServingClient`` on the contract server),
``OnnxDecoder``, Node (onnxruntime-node) and the browser explorer (onnxruntime-web).

The export is the session's ``conditional_export`` (tests.support.conditional): class 0 draws from a 3-component GMM,
class 1 from a full-covariance Gaussian, class 2 from N(0, I). Latents are compared within
``ClassSamplers.latent_tolerance`` (the drawing rule's float32 round-off plus one ulp of noise), images within the
round-off bound of ``keras_vae.export.roundoff`` for this network, with the latents moved by that tolerance (how the
exporter bounds its sampler check).
"""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from keras_vae.serving.client import InputShapeError, TFServingClient, TFServingServerError, parse_signature_defs
from tests.support.tools import NODE_DIR, drive_explorer, require_tool

SEED, N, K, D = 7, 16, 3, 4
LABELS = (0, 1, 2)


@pytest.fixture(scope="module")
def references(conditional_export):
    """{label: (z, latent tolerance, image, image bound)} of the run folder for (SEED, label)."""
    import tensorflow as tf

    from keras_vae.export import roundoff
    from keras_vae.export.class_table import export_class_samplers
    from keras_vae.export.parity import artifact_arithmetics
    from keras_vae.runs.folder import load_model
    from keras_vae.sampling.noise import portable_noise

    run = conditional_export / "run"
    model = load_model(run / "model.keras")
    classes = export_class_samplers(run, K, D)
    arithmetics = artifact_arithmetics(model)
    plan = roundoff.perturbation_plan(model, arithmetics)
    eps, u = portable_noise(SEED, N, D)
    out = {}
    for label in LABELS:
        labels = np.full(N, label)
        z = classes.sample(N, SEED, label)
        tolerance = classes.latent_tolerance(eps, u, labels)
        image = model.to_unit(model.decode(tf.constant(z), labels=labels)).numpy()
        signs = roundoff.random_signs(z.shape, np.random.default_rng(roundoff.PERTURBATION_SEED))
        with roundoff.perturbed(plan):
            moved = model.to_unit(model.decode(tf.constant((z + tolerance * signs).astype(np.float32)),
                                               labels=labels)).numpy()
        out[label] = (z, tolerance, image, roundoff.bound(image, moved, arithmetics))
    # a class without a sampler: the run's own model.sample draws exactly these
    np.testing.assert_array_equal(model.to_unit(model.sample(N, seed=SEED, label=2)).numpy(), out[2][2])
    return out


def _check(runtime, label, references, z=None, image=None):
    """Assert ``z`` and ``image`` of one runtime against the run's for (SEED, label); print the differences."""
    ref_z, tolerance, ref_image, bound = references[label]
    line = f"{runtime} class {label}:"
    if z is not None:
        z = np.asarray(z, np.float64).reshape(ref_z.shape)
        diff = np.abs(z - ref_z)
        assert np.all(diff <= tolerance), (runtime, label, float(diff.max()))
        line += f" z max abs diff {diff.max():.3g} (bound {tolerance.max():.3g})"
    if image is not None:
        image = np.asarray(image, np.float64).reshape(ref_image.shape)
        diff = float(np.max(np.abs(image - ref_image)))
        assert diff <= bound, (runtime, label, diff, bound)
        line += f", image max abs diff {diff:.3g} (bound {bound:.3g})"
    print(line)


# ------------------------------------------------------------------------------------------------- fast
def test_client_asks_for_a_label_exactly_when_the_signature_takes_one():
    """The client reads the signature metadata: a conditional model's calls need ``label=``, an unconditional
    model's refuse it, each with one line before anything is sent."""
    def signature(inputs):
        return {"inputs": {name: {"dtype": dtype, "tensor_shape": {"dim": [{"size": s} for s in shape]}}
                           for name, (dtype, shape) in inputs.items()},
                "outputs": {"image": {"dtype": "DT_FLOAT", "tensor_shape": {"dim": [{"size": -1}, {"size": 2}]}}}}

    def client(with_label):
        c = TFServingClient("http://127.0.0.1:9", "vae")
        label = {"label": ("DT_INT32", [-1])} if with_label else {}
        sample_label = {"label": ("DT_INT32", [])} if with_label else {}
        c._signatures = parse_signature_defs({
            "serving_default": signature({"z": ("DT_FLOAT", [-1, D]), **label}),
            "sample": signature({"n": ("DT_INT32", []), "seed": ("DT_INT64", []), **sample_label})})
        c._send = lambda sig, arrays, fmt: sent.append((sig, arrays)) or {"image": np.zeros((len(arrays["z"]), 2))}
        return c

    sent = []
    z = np.zeros((3, D), np.float32)
    conditional, plain = client(True), client(False)
    conditional.decode(z, label=2)
    np.testing.assert_array_equal(sent[-1][1]["label"], [2, 2, 2])
    assert sent[-1][1]["label"].dtype == np.int32
    conditional.decode(z, label=[0, 1, 2])
    np.testing.assert_array_equal(sent[-1][1]["label"], [0, 1, 2])
    for call, match in ((lambda: conditional.decode(z), "class-conditional .*pass label=K"),
                        (lambda: conditional.decode(z, label=[0, 1]), "one per row"),
                        (lambda: conditional.decode(z, label=-1), "class >= 0"),
                        (lambda: conditional.decode(z, label=1.5), "integer class"),
                        (lambda: conditional.sample(2, 0), "pass label=K"),
                        (lambda: conditional.sample(2, 0, label=[1, 2]), "pass one integer"),
                        (lambda: plain.decode(z, label=0), "not class-conditional"),
                        (lambda: plain.sample(2, 0, label=0), "not class-conditional")):
        with pytest.raises(InputShapeError, match=match):
            call()
    plain.decode(z)
    assert "label" not in sent[-1][1]


# --------------------------------------------------------------------------------------- every runtime
@pytest.mark.slow
def test_savedmodel_through_tf_serving_rest(conditional_export, references):
    from keras_vae.serving.contract_server import ContractServer

    out = conditional_export / "export"
    with ContractServer({"vae": out / "savedmodel" / "vae"}) as server:
        client = TFServingClient(server.url, "vae", timeout=120)
        for label in LABELS:
            image, z = client.sample(N, SEED, label=label)
            _check("SavedModel sample (REST)", label, references, z=z, image=image)
        images_uint8, _ = client.sample(N, SEED, uint8=True, label=0)
        _, _, ref_image, bound = references[0]
        levels = np.abs(images_uint8.astype(int) - np.floor(np.clip(ref_image, 0, 1) * 255 + 0.5)).max()
        assert levels <= np.floor(255 * bound) + 1
        ref_z = references[1][0]
        _check("SavedModel decode (REST)", 1, references, image=client.decode(ref_z, label=1))
        mean, _ = client.encode(references[1][2], label=[1] * N)
        assert mean.shape == (N, D) and np.all(np.isfinite(mean))
        # a label outside the model's classes: the signature's own assertion, one line, through the server
        with pytest.raises(TFServingServerError, match=r"sample: label must be < 3 \(input label"):
            client.sample(2, SEED, label=3)
        with pytest.raises(TFServingServerError, match="decode: label must be < 3"):
            client.decode(ref_z[:2], label=[0, 3])


@pytest.mark.slow
def test_onnx_decoder_and_sample_command(conditional_export, references, tmp_path, capsys):
    from keras_vae.cli import main
    from keras_vae.serving.onnx_decoder import OnnxDecoder

    out = conditional_export / "export"
    decoder = OnnxDecoder(out)
    for label in LABELS:
        z = decoder.sample_latents(N, SEED, label=label)
        _check("OnnxDecoder", label, references, z=z, image=decoder.sample(N, SEED, label=label))
        np.testing.assert_array_equal(decoder.sample(N, SEED, label=label), decoder.decode(z, label=label))
    # keras-vae sample EXPORT --class K: those images (onnxruntime, in this process); without --class: one line
    assert main(["sample", str(out), "--class", "1", "--n", str(N), "--seed", str(SEED),
                 "--out", str(tmp_path / "s.npz")]) == 0
    with np.load(tmp_path / "s.npz") as saved:
        np.testing.assert_array_equal(saved["images"], decoder.sample(N, SEED, label=1, output="uint8"))
        assert str(saved["sampler"]) == "class-1"
    capsys.readouterr()
    assert main(["sample", str(out), "--n", "2", "--out", str(tmp_path / "x.png")]) == 2
    assert "class-conditional export (3 classes): pass --class K with K in [0, 3)" in capsys.readouterr().err


@pytest.mark.slow
def test_node(conditional_export, references, tmp_path):
    require_tool(shutil.which("node") is not None, "node is not installed (apt-get install nodejs)")
    require_tool((NODE_DIR / "node_modules" / "onnxruntime-node").is_dir(),
                 f"{NODE_DIR}/node_modules is missing: run serving/install_test_deps.sh")
    out = conditional_export / "export"
    # one Node process: the library for every label and its refusals, then the CLI with --class
    script = f"""
const {{ loadDecoder, loadSampler }} = require({json.dumps(str(NODE_DIR / 'decoder.js'))});
(async () => {{
  const decoder = await loadDecoder({json.dumps(str(out / 'decoder.onnx'))});
  const sampler = await loadSampler({json.dumps(str(out / 'sampler.onnx'))}, decoder.latentDim);
  const result = {{ numClasses: decoder.numClasses, samplerClasses: sampler.numClasses, labels: {{}}, errors: [] }};
  for (const label of {json.dumps(list(LABELS))}) {{
    const z = await sampler.latents({N}, {SEED}, 1, label);
    const image = await decoder.decode(z, label);
    result.labels[label] = {{ z: Array.from(z.data), image: Array.from(image.data) }};
  }}
  for (const bad of [undefined, 3, 1.5]) {{
    try {{ await decoder.decode([[0, 0, 0, 0]], bad); }} catch (err) {{ result.errors.push(err.message); }}
  }}
  console.log(JSON.stringify(result));
  process.argv = [process.argv[0], 'decode.js', '--model', {json.dumps(str(out / 'decoder.onnx'))}, '--sample', '{N}',
    '--seed', '{SEED}', '--class', '1', '--out-dir', {json.dumps(str(tmp_path / 'png'))},
    '--latents-out', {json.dumps(str(tmp_path / 'z.json'))}, '--float-out', {json.dumps(str(tmp_path / 'images.bin'))}];
  require({json.dumps(str(NODE_DIR / 'decode.js'))});
}})();
"""
    proc = subprocess.run(["node", "-e", script], capture_output=True, text=True, timeout=120, cwd=NODE_DIR)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    result, summary = json.loads(lines[0]), json.loads(lines[1])
    assert result["numClasses"] == K and result["samplerClasses"] == K
    for label in LABELS:
        entry = result["labels"][str(label)]
        _check("Node (onnxruntime-node)", label, references, z=entry["z"], image=entry["image"])
    assert "class-conditional (3 classes): pass --class K" in result["errors"][0]
    assert "label 3 is out of range" in result["errors"][1] and "label 1.5 is out of range" in result["errors"][2]
    assert summary["class"] == 1 and summary["seed"] == SEED and len(summary["pngs"]) == N
    _check("Node CLI --class 1", 1, references, z=json.loads((tmp_path / "z.json").read_text()),
           image=np.fromfile(tmp_path / "images.bin", "<f4"))


@pytest.mark.slow
def test_browser_class_picker(conditional_export, references):
    ref_z = references[1][0]
    rows = json.dumps(ref_z[:4].tolist())
    report = drive_explorer(conditional_export / "export", f"seed={SEED}&n={N}&class=1&z={rows}", "--pick-class", "2")
    assert report["num_classes"] == K and report["picker_visible"] and report["sampler"] == "sampler.onnx"
    first = report["last_sample"]
    assert first["seed"] == SEED and first["label"] == 1
    _check("browser (onnxruntime-web) ?class=1", 1, references, z=first["z"])
    decoded = report["result"]  # ?z= decoded with class 1
    _, _, ref_image, bound = references[1]
    diff = float(np.max(np.abs(np.asarray(decoded["data"]).reshape(4, 28, 28, 1) - ref_image[:4])))
    assert diff <= bound, diff
    print(f"browser ?z= class 1: image max abs diff {diff:.3g} (bound {bound:.3g})")
    picked = report["pick_class"]
    assert picked["last_sample"]["seed"] == SEED and picked["last_sample"]["label"] == 2
    _check("browser picker class 2", 2, references, z=picked["last_sample"]["z"], image=picked["image"]["data"])
