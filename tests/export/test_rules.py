"""The version-directory rule, refused inputs and parity failures: one clear line, nothing half-written."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import tensorflow as tf

from keras_vae.export import ParityError, contract, export_run
from keras_vae.export import signatures as signatures_module
from keras_vae.cli import main
from keras_vae.errors import ArtifactError, ConfigError



def _only_the_start_line(stdout: str) -> bool:
    """A refused export prints at most its start line ('exporting RUN to OUT ...') on stdout, no result."""
    lines = stdout.splitlines()
    return lines == [] or (len(lines) == 1 and lines[0].startswith("exporting "))

def _tree_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(["export", *map(str, argv)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _diverging_make_functions(signature: str, offset: float):
    """make_functions with one signature's output shifted by ``offset`` (a broken exporter)."""
    original = signatures_module.make_functions

    def make(model):
        functions = dict(original(model))
        fn, spec = functions[signature]

        @tf.function(input_signature=[spec])
        def shifted(x):
            return {k: v + tf.cast(offset, v.dtype) for k, v in fn(x).items()}

        functions[signature] = (shifted, spec)
        return functions

    return make


@pytest.fixture(scope="module")
def exported_once(vae_export):
    """The session's export folder holding version 1 of the tiny VAE (copied by the tests that change it)."""
    return vae_export.out


def test_existing_version_needs_force(vae_run, exported_once, tmp_path, capsys):
    out = tmp_path / "exp"
    shutil.copytree(exported_once, out)
    before = _tree_hashes(out)
    with pytest.raises(ArtifactError, match=r"savedmodel/vae/1' already exists: .*--force"):
        export_run(vae_run, out)
    code, stdout, err = _cli(capsys, vae_run, "--out", out)
    assert code == 2 and _only_the_start_line(stdout)
    assert err.count("\n") == 1 and "already exists" in err and "--force" in err
    assert _tree_hashes(out) == before  # nothing touched


@pytest.mark.slow
def test_force_replaces_the_version(vae_run, exported_once, tmp_path, capsys):
    out = tmp_path / "exp"
    shutil.copytree(exported_once, out)
    stale = out / "savedmodel" / "vae" / "1" / "stale.txt"
    stale.write_text("from an older export")
    (out / contract.DECODER_QUANTIZED_ONNX).write_bytes(b"an older variant")
    code, stdout, err = _cli(capsys, vae_run, "--out", out, "--force")
    assert code == 0, err
    assert "serving_default" in stdout and "parity" in stdout and "export.json" in stdout
    assert not stale.exists()  # the old version folder was replaced, not merged
    assert not (out / contract.DECODER_QUANTIZED_ONNX).exists()  # a variant this export did not write
    assert (out / "savedmodel" / "vae" / "1" / "saved_model.pb").is_file()
    assert not [p for p in out.rglob(".*")]


@pytest.mark.slow
def test_new_version_goes_beside_the_old_one(vae_run, exported_once, tmp_path):
    out = tmp_path / "exp"
    shutil.copytree(exported_once, out)
    v1 = _tree_hashes(out / "savedmodel" / "vae" / "1")
    report = export_run(vae_run, out, version=2, name="digits")
    assert (out / "savedmodel" / "digits" / "2" / "saved_model.pb").is_file()
    assert _tree_hashes(out / "savedmodel" / "vae" / "1") == v1
    on_disk = json.loads((out / "export.json").read_text())
    assert on_disk["savedmodel"]["path"] == "savedmodel/digits/2" == report["savedmodel"]["path"]
    assert on_disk["savedmodel"]["version"] == 2 and on_disk["savedmodel"]["name"] == "digits"


@pytest.mark.slow
def test_parity_failure_names_the_signature_and_writes_nothing(vae_run, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(signatures_module, "make_functions", _diverging_make_functions("reconstruct", 1e-3))
    out = tmp_path / "exp"
    # the bound is derived from this network's float32 round-off: far below the 1e-3 shift
    with pytest.raises(ParityError, match=r"signature 'reconstruct' .* max abs difference 0\.001 .* exceeds its "
                                          r"round-off bound [0-9.e-]+ \(keras_vae/export/roundoff\.py\)") as info:
        export_run(vae_run, out)
    assert 0 < info.value.tolerance < 1e-4
    assert not out.exists()
    code, stdout, err = _cli(capsys, vae_run, "--out", out)
    assert code == 2 and "parity failed for signature 'reconstruct'" in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.slow
def test_parity_failure_keeps_the_previous_export(vae_run, exported_once, tmp_path, monkeypatch):
    out = tmp_path / "exp"
    shutil.copytree(exported_once, out)
    before = _tree_hashes(out)
    # a small shift in the ONNX-converted decoder too: the decoder is converted from this function
    monkeypatch.setattr(signatures_module, "make_functions", _diverging_make_functions("serving_default", 2e-4))
    with pytest.raises(ParityError, match="signature 'serving_default'") as info:
        export_run(vae_run, out, force=True)
    assert info.value.signature == "serving_default" and info.value.difference == pytest.approx(2e-4, rel=0.05)
    assert _tree_hashes(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.slow
def test_a_wrong_weight_in_encoder_onnx_is_refused(vae_run, tmp_path, monkeypatch):
    """A converter that gets one weight tensor one percent wrong: the encode parity names encoder.onnx."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from keras_vae.export import onnx_export

    convert = onnx_export.convert_function

    def convert_with_a_wrong_weight(fn, spec, metadata, path, *args, **kwargs):
        result = convert(fn, spec, metadata, path, *args, **kwargs)
        if Path(path).name == contract.ENCODER_ONNX:
            proto = onnx.load(str(path))
            weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT and len(t.dims) == 2]
            largest = max(weights, key=lambda t: int(np.prod(t.dims)))
            largest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(largest) * np.float32(1.01), largest.name))
            onnx.save(proto, str(path))
        return result

    monkeypatch.setattr(onnx_export, "convert_function", convert_with_a_wrong_weight)
    out = tmp_path / "exp"
    with pytest.raises(ParityError, match=r"signature 'encode' \(encoder\.onnx, output '(mean|log_variance)', batch 1\)"):
        export_run(vae_run, out)
    assert not out.exists()


def test_parity_error_is_an_artifact_error():
    err = ParityError("encode", "encoder.onnx", 7, "mean", 0.5, 1e-4)
    assert isinstance(err, ArtifactError)
    assert "'encode'" in str(err) and "encoder.onnx" in str(err) and "batch 7" in str(err) and "0.5" in str(err)


# --- bad input -----------------------------------------------------------------------------------
def _copy_run(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "run"
    shutil.copytree(run, dst)
    return dst


def _break_missing_folder(run, tmp_path):
    return tmp_path / "no-such-run"


def _break_missing_model(run, tmp_path):
    run = _copy_run(run, tmp_path)
    (run / "model.keras").unlink()
    return run


def _break_garbage_model(run, tmp_path):
    run = _copy_run(run, tmp_path)
    (run / "model.keras").write_bytes(b"\x00\x13garbage, not a zip archive" * 10)
    return run


def _break_truncated_model(run, tmp_path):
    run = _copy_run(run, tmp_path)
    data = (run / "model.keras").read_bytes()
    (run / "model.keras").write_bytes(data[: len(data) // 2])
    return run


def _break_unknown_kind(run, tmp_path):
    run = _copy_run(run, tmp_path)
    config = json.loads((run / "config.json").read_text())
    config["model"]["kind"] = "diffusion"
    (run / "config.json").write_text(json.dumps(config))
    return run


def _break_corrupt_config(run, tmp_path):
    run = _copy_run(run, tmp_path)
    (run / "config.json").write_text("{not json")
    return run


def _break_corrupt_sampler(run, tmp_path):
    run = _copy_run(run, tmp_path)
    (run / "sampler.json").write_text('{"format": "keras-vae-latent-sampler", "version": 1, "kind": "gmm"')
    return run


def _break_foreign_sampler(run, tmp_path):
    from keras_vae.sampling.samplers import prior_sampler

    run = _copy_run(run, tmp_path)
    prior_sampler(3).save(run / "sampler.json")  # the model's latent size is 4
    return run


BAD_RUNS = {
    "corrupt sampler.json": (_break_corrupt_sampler, r"sampler\.json' is not valid JSON"),
    "sampler.json of another model": (_break_foreign_sampler, r"latent dimension 3 but the model has 4"),
    "missing run folder": (_break_missing_folder, r"run folder .*no-such-run' does not exist"),
    "missing model.keras": (_break_missing_model, r"has no model\.keras"),
    "garbage model.keras": (_break_garbage_model, r"model\.keras' is corrupt"),
    "truncated model.keras": (_break_truncated_model, r"model\.keras' is corrupt|cannot load model file"),
    "unknown model kind": (_break_unknown_kind, r"unknown model kind 'diffusion': choose 'vae' or 'vaegan'"),
    "corrupt config.json": (_break_corrupt_config, r"config\.json' is not valid JSON"),
}


@pytest.mark.parametrize("case", sorted(BAD_RUNS))
def test_bad_run_folders(case, vae_run, tmp_path, capsys):
    breaker, message = BAD_RUNS[case]
    run = breaker(vae_run, tmp_path)
    out = tmp_path / "exp"
    with pytest.raises(ArtifactError, match=message):
        export_run(run, out)
    code, stdout, err = _cli(capsys, run, "--out", out)
    assert code == 2 and _only_the_start_line(stdout)
    assert err.startswith("keras-vae export: error: ") and err.count("\n") == 1, err
    assert not out.exists()


@pytest.mark.parametrize("case", ["missing run folder", "missing model.keras", "unknown model kind",
                                  "corrupt config.json"])
def test_a_run_folder_refused_before_any_work_gets_no_start_line(case, vae_run, tmp_path, capsys):
    """The checks that need no model (the folder, model.keras present, config.json) come before the command
    says what it exports: the refusal is the only line."""
    breaker, message = BAD_RUNS[case]
    code, stdout, err = _cli(capsys, breaker(vae_run, tmp_path), "--out", tmp_path / "exp")
    assert code == 2 and stdout == "" and re.search(message, err) and err.count("\n") == 1, (stdout, err)


@pytest.mark.parametrize("kind, why", [("flow", "the flow is fitted only on request"),
                                       ("gmm", "it was trained before samplers were fitted")])
def test_a_missing_sampler_candidate_is_refused_before_any_work(vae_run, tmp_path, capsys, kind, why):
    assert not (vae_run / "samplers" / f"{kind}.json").exists()
    code, stdout, err = _cli(capsys, vae_run, "--out", tmp_path / "exp", "--sampler", kind)
    assert code == 2 and stdout == "" and err.count("\n") == 1
    assert f"has no '{kind}' sampler (samplers/{kind}.json): {why}" in err
    assert not (tmp_path / "exp").exists()


def test_refuses_a_file_or_a_foreign_folder_as_export_dir(vae_run, tmp_path, capsys):
    a_file = tmp_path / "exp.txt"
    a_file.write_text("x")
    with pytest.raises(ArtifactError, match="is a file"):
        export_run(vae_run, a_file)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(ArtifactError, match="is not a keras-vae export: .*--force"):
        export_run(vae_run, foreign)
    code, stdout, err = _cli(capsys, vae_run, "--out", foreign)
    assert code == 2 and "not a keras-vae export" in err and stdout == ""  # refused before the start line
    assert sorted(p.name for p in foreign.iterdir()) == ["holiday.jpg"]


def test_refuses_a_run_folder_as_export_dir_even_with_force(vae_run, tmp_path, capsys):
    run = Path(shutil.copytree(vae_run, tmp_path / "run"))
    before = _tree_hashes(run)
    for force in (False, True):
        with pytest.raises(ArtifactError, match="is a run folder .*export into another folder"):
            export_run(run, run, force=force)
        code, stdout, err = _cli(capsys, run, "--out", run, *(["--force"] if force else []))
        assert code == 2 and "is a run folder" in err and stdout == ""
    assert _tree_hashes(run) == before  # nothing written into the run


@pytest.mark.parametrize("kwargs, message", [({"version": 0}, "--version must be a positive integer"),
                                             ({"version": -3}, "--version must be a positive integer"),
                                             ({"name": "../up"}, "is not a valid model name")])
def test_bad_version_or_name(vae_run, tmp_path, capsys, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        export_run(vae_run, tmp_path / "exp", **kwargs)
    flag, value = next(iter(kwargs.items()))
    code, stdout, err = _cli(capsys, vae_run, "--out", tmp_path / "exp", f"--{flag}", value)
    assert code == 2 and message in err and stdout == ""
    assert not (tmp_path / "exp").exists()


@pytest.mark.slow
def test_sampler_parity_failure_writes_nothing(vae_run, tmp_path, monkeypatch, capsys):
    """A SavedModel ``sample`` signature whose latents drift from LatentSampler.sample is refused."""
    import keras_vae.export.sampler_tf as sampler_tf

    original = sampler_tf.latents_tf
    monkeypatch.setattr(sampler_tf, "latents_tf", lambda *args: original(*args) + 1e-3)
    out = tmp_path / "exp"
    with pytest.raises(ParityError, match=r"signature 'sample' \(SavedModel signature, output 'z', batch 1\)"):
        export_run(vae_run, out)
    assert not out.exists()


def test_missing_sampler_candidate_is_one_line(vae_run, tmp_path, capsys):
    out = tmp_path / "exp"
    code, stdout, err = _cli(capsys, vae_run, "--out", out, "--sampler", "gmm")
    assert code == 2 and _only_the_start_line(stdout) and err.count("\n") == 1
    assert "has no 'gmm' sampler (samplers/gmm.json)" in err and "--sampler prior" in err
    assert not out.exists()
