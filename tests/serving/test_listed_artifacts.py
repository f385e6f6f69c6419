"""A file that export.json lists and that is missing, altered or out of range is an error in every consumer.

Python (OnnxDecoder, OnnxEncoder, ``keras-vae sample``), the Node decoder and the browser explorer. The exports here
are tiny hand-built ONNX graphs (no TensorFlow, no training): a one-MatMul decoder and the real sampler.onnx builder.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from keras_vae.cli import main
from keras_vae.errors import ArtifactError, DataError
from keras_vae.export import contract
from keras_vae.export.sampler_onnx import build_sampler_proto
from keras_vae.sampling.noise import NOISE_ALGORITHM
from keras_vae.serving.onnx_decoder import OnnxDecoder
from keras_vae.serving.onnx_encoder import OnnxEncoder

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "serving" / "node"
D, SHAPE = 4, (4, 4, 1)


def _decoder_proto():
    """z [N, D] -> sigmoid(z W) reshaped to image [N, 4, 4, 1]: the decoder contract in three ops."""
    w = np.random.default_rng(0).normal(size=(D, int(np.prod(SHAPE)))).astype(np.float32)
    nodes = [helper.make_node("MatMul", [contract.LATENT_INPUT, "w"], ["logits"]),
             helper.make_node("Sigmoid", ["logits"], ["flat"]),
             helper.make_node("Reshape", ["flat", "shape"], [contract.IMAGE_OUTPUT])]
    graph = helper.make_graph(
        nodes, "tiny_decoder",
        [helper.make_tensor_value_info(contract.LATENT_INPUT, TensorProto.FLOAT, [contract.BATCH_AXIS, D])],
        [helper.make_tensor_value_info(contract.IMAGE_OUTPUT, TensorProto.FLOAT, [contract.BATCH_AXIS, *SHAPE])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([-1, *SHAPE], np.int64), "shape")])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", contract.ONNX_OPSET)])
    proto.ir_version = 8
    helper.set_model_props(proto, {contract.META_LATENT_DIM: str(D), contract.META_IMAGE_SHAPE: json.dumps(list(SHAPE)),
                                   contract.META_VALUE_RANGE: "[0, 1]", contract.META_ROLE: "decoder"})
    return proto


def _sampler_dict(means, scale=1.0, kind="gaussian"):
    return {"format": "keras-vae-latent-sampler", "version": 1, "kind": kind, "latent_dim": D, "weights": [1.0],
            "means": [list(means)], "scale_tril": [(np.eye(D) * scale).tolist()], "fitted_on": {}, "selection": {}}


def _write_manifest(folder: Path) -> None:
    files = {p.name: {"sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "bytes": p.stat().st_size}
             for p in sorted(folder.iterdir()) if p.name != contract.EXPORT_JSON}
    (folder / contract.EXPORT_JSON).write_text(json.dumps({"files": files}, indent=1))


def tiny_export(folder: Path, sampler: dict | None = None) -> Path:
    """decoder.onnx, sampler.onnx and sampler.json (written as given, even out of range, as an older keras-vae
    could have exported it) and export.json listing them all."""
    folder.mkdir(parents=True)
    onnx.save(_decoder_proto(), str(folder / contract.DECODER_ONNX))
    sampler = sampler or _sampler_dict([0.5, -0.5, 0.25, 0.0])
    arrays = {k: np.asarray(sampler[k], np.float64) for k in ("weights", "means", "scale_tril")}
    stand_in = types.SimpleNamespace(kind=sampler["kind"], latent_dim=D, num_components=len(sampler["weights"]), **arrays)
    with np.errstate(over="ignore"):  # an out-of-range sampler becomes inf constants, as it would have then
        proto = build_sampler_proto(stand_in, {contract.META_ROLE: "sampler", contract.META_LATENT_DIM: str(D),
                                               contract.META_SAMPLER_KIND: sampler["kind"],
                                               contract.META_NOISE: NOISE_ALGORITHM})
    onnx.save(proto, str(folder / contract.SAMPLER_ONNX))
    (folder / contract.SAMPLER_JSON).write_text(json.dumps(sampler))
    _write_manifest(folder)
    return folder


def _edit_manifest(folder: Path, edit) -> None:
    manifest = json.loads((folder / contract.EXPORT_JSON).read_text())
    edit(manifest["files"])
    (folder / contract.EXPORT_JSON).write_text(json.dumps(manifest))


def test_a_complete_export_samples_its_sampler(tmp_path):
    dec = OnnxDecoder(tiny_export(tmp_path / "exp"))
    assert dec.sampler_kind == "gaussian" and dec.verified
    z = dec.sample_latents(3, seed=1)
    assert np.all(np.isfinite(z)) and dec.sample(3, seed=1).shape == (3, *SHAPE)


def test_listed_sampler_that_is_missing_is_an_error_not_the_prior(tmp_path, capsys):
    exp = tiny_export(tmp_path / "exp")
    (exp / contract.SAMPLER_ONNX).unlink()
    with pytest.raises(ArtifactError, match=r"sampler\.onnx is missing, but export\.json lists it: the export is "
                                            r"incomplete .*sampler=False; keras-vae sample: --sampler prior"):
        OnnxDecoder(exp)
    with pytest.raises(ArtifactError, match="sampler.onnx is missing"):
        OnnxDecoder(exp, verify=False)  # not checking hashes does not make a listed file optional
    assert OnnxDecoder(exp, sampler=False).sampler_kind == "prior"  # the prior on purpose
    out = tmp_path / "s.png"
    assert main(["sample", str(exp), "--n", "2", "--out", str(out)]) == 2
    assert "sampler.onnx is missing, but export.json lists it" in capsys.readouterr().err and not out.exists()
    assert main(["sample", str(exp), "--n", "2", "--out", str(out), "--sampler", "prior"]) == 0 and out.is_file()


def test_listed_sampler_json_that_is_missing_or_altered(tmp_path):
    exp = tiny_export(tmp_path / "exp")
    text = (exp / contract.SAMPLER_JSON).read_text()
    (exp / contract.SAMPLER_JSON).write_text(text.replace("0.25", "0.35"))  # same size, other values
    with pytest.raises(ArtifactError, match=r"sampler\.json does not match export\.json: sha256 "):
        OnnxDecoder(exp)
    (exp / contract.SAMPLER_JSON).unlink()
    with pytest.raises(ArtifactError, match=r"sampler\.json is missing, but export\.json lists it"):
        OnnxDecoder(exp)


@pytest.mark.parametrize("sampler, field", [
    (_sampler_dict([1e300, 0, 0, 0]), r"means holds a value \(1e\+300\) beyond the float32 range"),
    (_sampler_dict([0, 0, 0, 0], scale=1e30), r"scale_tril is so large that latents .* overflows float32"),
])
def test_exported_sampler_out_of_float32_range_is_refused(tmp_path, sampler, field):
    """An export of an out-of-range sampler (hashes intact) is refused at load, naming the field."""
    exp = tiny_export(tmp_path / "exp", sampler)
    with pytest.raises(ArtifactError, match=r"sampler\.json.* is corrupt: " + field):
        OnnxDecoder(exp)


def test_latents_beyond_float32_are_never_decoded(tmp_path):
    dec = OnnxDecoder(tiny_export(tmp_path / "exp"))
    with pytest.raises(DataError, match=r"the drawn latents reach .* lower the temperature"):
        dec.sample(2, seed=0, temperature=1e38)
    with pytest.raises(DataError, match=r"the drawn latents reach"):
        OnnxDecoder(tmp_path / "exp", sampler=False).sample_latents(2, seed=0, temperature=1e38)


@pytest.mark.parametrize("edit, message", [
    (lambda f: f[contract.DECODER_ONNX].update(bytes=str(f[contract.DECODER_ONNX]["bytes"])),
     r"files\['decoder\.onnx'\]\.bytes must be an integer >= 0, got str '\d+'"),
    (lambda f: f[contract.DECODER_ONNX].update(bytes=True), r"files\['decoder\.onnx'\]\.bytes must be an integer"),
    (lambda f: f[contract.DECODER_ONNX].update(sha256=12), r"files\['decoder\.onnx'\]\.sha256 must be 64 lower-case hex"),
    (lambda f: f.update({contract.DECODER_ONNX: "abc"}), r"files\['decoder\.onnx'\] must be an object"),
    (lambda f: f[contract.DECODER_ONNX].update(bytes=f[contract.DECODER_ONNX]["bytes"] + 1),
     r"decoder\.onnx does not match export\.json: size (\d+) bytes, recorded (?!\1)\d+; the file was changed"),
])
def test_export_json_entries_are_type_checked_and_name_the_differing_field(tmp_path, edit, message):
    exp = tiny_export(tmp_path / "exp")
    _edit_manifest(exp, edit)
    with pytest.raises(ArtifactError, match=message):
        OnnxDecoder(exp)


def test_onnx_encoder_checks_the_entry_types_too(tmp_path):
    exp = tiny_export(tmp_path / "exp")
    (exp / contract.ENCODER_ONNX).write_bytes(b"stand-in: the check comes before onnxruntime reads it")
    _write_manifest(exp)
    _edit_manifest(exp, lambda f: f[contract.ENCODER_ONNX].update(bytes="53"))
    with pytest.raises(ArtifactError, match=r"files\['encoder\.onnx'\]\.bytes must be an integer >= 0, got str '53'"):
        OnnxEncoder(exp)


def _node(*args):
    return subprocess.run(["node", str(NODE_DIR / "decode.js"), *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def test_node_refuses_missing_altered_and_out_of_range_artifacts(tmp_path):
    if shutil.which("node") is None or not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():
        pytest.skip("node or serving/node/node_modules (onnxruntime-node) is missing: serving/install_test_deps.sh")
    good = tiny_export(tmp_path / "good")
    sample = ["--sample", 2, "--seed", 1, "--out-dir", tmp_path / "png"]
    ok = _node("--model", good / contract.DECODER_ONNX, *sample)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["sampler"] == str(good / contract.SAMPLER_ONNX)

    cases = {}
    missing = shutil.copytree(good, tmp_path / "missing")
    (missing / contract.SAMPLER_ONNX).unlink()
    cases[missing] = r"sampler\.onnx is missing, but export\.json lists it: the export is incomplete"
    altered = shutil.copytree(good, tmp_path / "altered")
    with open(altered / contract.SAMPLER_ONNX, "ab") as f:
        f.write(b"\0")
    cases[altered] = r"sampler\.onnx does not match export\.json: size \d+ bytes, recorded \d+; sha256"
    typed = shutil.copytree(good, tmp_path / "typed")
    _edit_manifest(typed, lambda f: f[contract.DECODER_ONNX].update(bytes=str(f[contract.DECODER_ONNX]["bytes"])))
    cases[typed] = r'files\["decoder\.onnx"\]\.bytes must be an integer >= 0, got string "\d+"'
    cases[tiny_export(tmp_path / "huge", _sampler_dict([1e300, 0, 0, 0]))] = r"sampler\.json is corrupt: means holds 1e\+300"
    cases[tiny_export(tmp_path / "wide", _sampler_dict([0, 0, 0, 0], 1e30))] = \
        r"sampler\.json is corrupt: scale_tril lets latents reach .* overflows float32"
    for folder, message in cases.items():
        proc = _node("--model", folder / contract.DECODER_ONNX, *sample)
        assert proc.returncode == 2 and re.search(message, proc.stderr), (folder.name, proc.stderr)
        assert "\n    at " not in proc.stderr, "a clear message, not a stack trace"
    prior = _node("--model", missing / contract.DECODER_ONNX, *sample, "--sampler", "prior")
    assert prior.returncode == 0, prior.stderr  # the prior on purpose


@pytest.mark.slow
def test_browser_refuses_missing_and_altered_artifacts(tmp_path):
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    web = REPO / "serving" / "web"
    if shutil.which("node") is None or not os.path.exists(chromium) or not (web / "node_modules" / "playwright-core").is_dir():
        pytest.skip("node, chromium or serving/web/node_modules (playwright-core) is missing: serving/install_test_deps.sh")
    from keras_vae.serving.assets import find_ort_web_dist
    from keras_vae.serving.demo import ORT_ENTRY, make_server, serve_in_thread, server_url

    try:
        find_ort_web_dist(ORT_ENTRY)
    except ArtifactError as exc:
        pytest.skip(str(exc))
    good = tiny_export(tmp_path / "good")
    missing = shutil.copytree(good, tmp_path / "missing")
    (missing / contract.SAMPLER_ONNX).unlink()
    altered = shutil.copytree(good, tmp_path / "altered")
    data = bytearray((altered / contract.DECODER_ONNX).read_bytes())
    data[-1] ^= 1  # same size, other bytes
    (altered / contract.DECODER_ONNX).write_bytes(bytes(data))
    cases = {good: ("ready", None), missing: ("error", "sampler.onnx: HTTP 404 but export.json lists it"),
             altered: ("error", "decoder.onnx does not match export.json: sha256 ")}
    for folder, (state, message) in cases.items():
        server = make_server(folder, port=0)
        serve_in_thread(server)
        try:
            proc = subprocess.run(["node", str(web / "drive.mjs"), "--url", server_url(server) + "?seed=1"],
                                  capture_output=True, text=True, timeout=120)
        finally:
            server.shutdown()
            server.server_close()
        assert proc.returncode == 0, proc.stderr[-2000:]
        report = json.loads(proc.stdout)
        assert report["state"] == state, (folder.name, report["status"])
        if message:
            assert message in report["status"], report["status"]
        else:
            assert report["sampler"] == "sampler.onnx" and report["console"] == []
