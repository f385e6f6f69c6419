"""OnnxDecoder against a real tf2onnx decoder.onnx: parity, API semantics, validation, threads, no TF."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnx
import pytest
from PIL import Image

from tests.support.decoders import TEST_IMAGE_SHAPE, TEST_LATENT_DIM
from tests.support.tools import REPO_ROOT, ort_reference
from keras_vae.export import contract
from keras_vae.errors import ArtifactError, DataError
from keras_vae.utils.images import make_grid, save_grid, to_uint8
from keras_vae.serving.onnx_decoder import OnnxDecoder, sample_grid

D = TEST_LATENT_DIM


@pytest.fixture(scope="module")
def dec(decoder_path):
    return OnnxDecoder(decoder_path)


def _z(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, D)).astype(np.float32)


# -- loading and metadata ----------------------------------------------------------------------
def test_loads_metadata_and_verifies(dec, decoder_dir):
    assert dec.latent_dim == D and dec.image_shape == TEST_IMAGE_SHAPE
    assert dec.verified is True  # export.json was found and matched
    assert dec.providers == ["CPUExecutionProvider"]  # no CUDA on this machine
    assert OnnxDecoder(decoder_dir).path == dec.path  # export folder accepted too


def test_decode_matches_plain_onnxruntime(dec, decoder_path):
    z = _z(5)
    out = dec.decode(z)
    assert out.shape == (5, *TEST_IMAGE_SHAPE) and out.dtype == np.float32
    np.testing.assert_array_equal(out, ort_reference(decoder_path, z))
    assert 0.0 <= out.min() and out.max() <= 1.0 and out.std() > 0.05  # not a flat image


def test_uint8_output_rule(dec):
    z = _z(3, seed=1)
    f, u = dec.decode(z), dec.decode(z, output="uint8")
    assert u.dtype == np.uint8 and u.shape == f.shape
    np.testing.assert_array_equal(u, np.floor(f.astype(np.float64) * 255 + 0.5).astype(np.uint8))
    assert u.max() > 200 and u.min() < 50
    np.testing.assert_array_equal(to_uint8(np.array([0.0, 0.5, 1.0, 1.7, -3.0])), [0, 128, 255, 255, 0])


def test_one_dimensional_code_is_batch_of_one_and_float64_is_cast(dec):
    z = _z(1)[0].astype(np.float64)
    out = dec.decode(z)
    assert out.shape == (1, *TEST_IMAGE_SHAPE) and out.dtype == np.float32
    np.testing.assert_array_equal(out, dec.decode(z.astype(np.float32)[None]))
    assert dec.decode(np.zeros((0, D), np.float32)).shape == (0, *TEST_IMAGE_SHAPE)


def test_sample_is_seeded_and_follows_the_prior(dec):
    """Without a sampler.onnx beside the decoder: z = portable noise eps (the prior N(0, I))."""
    from keras_vae.sampling.noise import portable_noise

    assert dec.sampler_kind == "prior" and dec.sampler_path is None
    a, b = dec.sample(6, seed=3), dec.sample(6, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, dec.sample(6, seed=4))
    z = portable_noise(3, 6, D)[0]
    np.testing.assert_array_equal(a, dec.decode(z))
    np.testing.assert_allclose(dec.sample_latents(6, seed=3, temperature=0.5), 0.5 * z, rtol=1e-6)
    # temperature 0 decodes the prior mean for every sample
    t0 = dec.sample(3, seed=9, temperature=0.0)
    np.testing.assert_array_equal(t0, np.repeat(dec.decode(np.zeros(D, np.float32)), 3, axis=0))


def test_sample_splits_batches_above_max_batch(decoder_path):
    small = OnnxDecoder(decoder_path, max_batch=4)
    big = OnnxDecoder(decoder_path)
    np.testing.assert_allclose(small.sample(10, seed=5), big.sample(10, seed=5), atol=1e-6)


def test_interpolate_end_points_and_midpoint(dec):
    z0, z1 = _z(2, seed=7)
    out = dec.interpolate(z0, z1, steps=5)
    assert out.shape == (5, *TEST_IMAGE_SHAPE)
    expected = dec.decode(np.stack([z0, 0.5 * z0 + 0.5 * z1, z1]))
    np.testing.assert_allclose(out[[0, 2, 4]], expected, atol=1e-6)
    with pytest.raises(DataError, match="steps must be >= 2"):
        dec.interpolate(z0, z1, steps=1)
    with pytest.raises(DataError, match="one latent code of shape"):
        dec.interpolate(z0[None], z1, steps=3)


def test_traverse_moves_only_the_chosen_dimension(dec):
    z = _z(1, seed=8)[0]
    values = [-2.0, 0.0, 2.0]
    out = dec.traverse(z, dim=3, values=values)
    batch = np.repeat(z[None], 3, axis=0)
    batch[:, 3] += np.float32(values)
    np.testing.assert_array_equal(out, dec.decode(batch))
    np.testing.assert_array_equal(out[1], dec.decode(z)[0])
    with pytest.raises(DataError, match=r"dim must be an integer in \[0, 8\)"):
        dec.traverse(z, dim=D, values=values)
    with pytest.raises(DataError, match="non-empty 1-D"):
        dec.traverse(z, dim=0, values=[])


# -- input validation --------------------------------------------------------------------------
@pytest.mark.parametrize("z, match", [
    (np.zeros((2, D + 1), np.float32), r"latent size 9, this decoder expects 8"),
    (np.zeros((2, 1, D), np.float32), r"rank 3"),
    (np.zeros((2, D), np.int32), r"must be a float array .* int32"),
    (np.zeros((2, D), bool), r"must be a float array .* bool"),
    (np.array([[0.0] * (D - 1) + [np.nan]], np.float32), r"NaN or Inf \(first at index \[0, 7\]\)"),
    (np.array([[np.inf] + [0.0] * (D - 1)]), r"NaN or Inf"),
    (np.full((1, D), 1e300), r"NaN or Inf"),  # float64 overflowing float32
    (np.zeros((5, D), np.float32), r"batch 5 > max_batch=4"),
])
def test_decode_rejects_bad_input(decoder_path, z, match):
    dec = OnnxDecoder(decoder_path, max_batch=4)
    with pytest.raises(DataError, match=match):
        dec.decode(z)


def test_bad_arguments(dec):
    with pytest.raises(DataError, match="output must be 'float' or 'uint8'"):
        dec.decode(_z(1), output="png")
    with pytest.raises(DataError, match="n must be >= 1"):
        dec.sample(0, seed=0)
    with pytest.raises(DataError, match="temperature must be"):
        dec.sample(2, seed=0, temperature=float("nan"))
    with pytest.raises(DataError, match=r"seed must be an integer in \[0, 2\^32\)"):
        dec.sample(2, seed=-1)
    with pytest.raises(ArtifactError, match="sampler file not found: .*sampler=False for the prior"):
        OnnxDecoder(dec.path, sampler=dec.path.parent / "nope.onnx")
    with pytest.raises(DataError, match="max_batch must be >= 1"):
        OnnxDecoder(dec.path, max_batch=0)
    assert isinstance(DataError("x"), ValueError)


# -- file problems -----------------------------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(ArtifactError, match=r"decoder file not found: .*nothing"):
        OnnxDecoder(tmp_path / "nothing" / "decoder.onnx")
    with pytest.raises(ArtifactError, match="decoder file not found"):
        OnnxDecoder(tmp_path)  # folder without decoder.onnx


def test_a_run_folder_is_named_as_one_with_the_export_command(tmp_path):
    from keras_vae.serving import OnnxEncoder

    (tmp_path / "model.keras").write_bytes(b"")
    hint = "^" + re.escape(f"'{tmp_path}' is a run folder, not an export folder: export it first (keras-vae export "
                           f"{tmp_path} --out DIR), or open it with keras_vae.load (TensorFlow)") + "$"
    with pytest.raises(ArtifactError, match=hint):
        OnnxDecoder(tmp_path)
    with pytest.raises(ArtifactError, match=hint):
        OnnxEncoder(tmp_path)


def test_changed_file_fails_the_sha256_check(export_copy):
    path = export_copy / contract.DECODER_ONNX
    data = bytearray(path.read_bytes())
    weights = max(onnx.load(str(path)).graph.initializer, key=lambda t: len(t.raw_data)).raw_data
    data[data.find(weights) + 5] ^= 0x01  # flip one bit in a weight: still loadable, not what was exported
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=r"does not match export.json.*changed or is corrupt"):
        OnnxDecoder(path)
    dec = OnnxDecoder(path, verify=False)  # explicit opt-out still loads
    assert dec.verified is False


def test_corrupt_file_names_the_file(export_copy):
    path = export_copy / contract.DECODER_ONNX
    path.write_bytes(b"this is not a protobuf" * 10)
    (export_copy / contract.EXPORT_JSON).unlink()
    with pytest.raises(ArtifactError, match=r"onnxruntime cannot load .*decoder\.onnx"):
        OnnxDecoder(path, verify=False)


def test_export_json_without_entry(export_copy):
    (export_copy / contract.EXPORT_JSON).write_text(json.dumps({"files": {}}))
    with pytest.raises(ArtifactError, match="does not list decoder.onnx"):
        OnnxDecoder(export_copy)


def _rewrite(path, edit):
    model = onnx.load(str(path))
    edit(model)
    onnx.save(model, str(path))
    (path.parent / contract.EXPORT_JSON).unlink()


def test_missing_metadata_key_is_named(export_copy):
    path = export_copy / contract.DECODER_ONNX

    def drop(model):
        keep = [p for p in model.metadata_props if p.key != contract.META_IMAGE_SHAPE]
        del model.metadata_props[:]
        model.metadata_props.extend(keep)
    _rewrite(path, drop)
    with pytest.raises(ArtifactError, match=r"no metadata key 'keras_vae.image_shape'"):
        OnnxDecoder(path, verify=False)


def test_metadata_that_contradicts_the_graph(export_copy):
    path = export_copy / contract.DECODER_ONNX

    def lie(model):
        for p in model.metadata_props:
            if p.key == contract.META_IMAGE_SHAPE:
                p.value = "[32, 32, 1]"
    _rewrite(path, lie)
    with pytest.raises(ArtifactError, match=r"graph declares 'image' with shape \[.*, 28, 28, 1\].*\[N, 32, 32, 1\]"):
        OnnxDecoder(path, verify=False)


def test_encoder_file_is_refused(export_copy):
    path = export_copy / contract.DECODER_ONNX

    def role(model):
        for p in model.metadata_props:
            if p.key == contract.META_ROLE:
                p.value = "encoder"
    _rewrite(path, role)
    with pytest.raises(ArtifactError, match="is a keras-vae 'encoder', not a decoder"):
        OnnxDecoder(path, verify=False)


# -- threads -----------------------------------------------------------------------------------
def test_concurrent_decodes_equal_sequential(dec):
    batches = [_z(1 + i % 7, seed=100 + i) for i in range(48)]
    sequential = [dec.decode(b) for b in batches]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(dec.decode, batches))
    for s, c in zip(sequential, concurrent):
        np.testing.assert_array_equal(s, c)


# -- no TensorFlow, PNG grid -------------------------------------------------------------------
def test_import_and_sample_grid_do_not_import_tensorflow(decoder_path, tmp_path):
    out = tmp_path / "grid.png"
    code = ("import sys; from keras_vae.serving.onnx_decoder import sample_grid; "
            f"sample_grid({str(decoder_path)!r}, 9, 0, {str(out)!r}); "
            "bad = [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules]; "
            "print('IMPORTED', bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "IMPORTED []" in proc.stdout
    assert Image.open(out).size == (3 * 28, 3 * 28)


def test_sample_grid_png_equals_decoded_tiles(dec, decoder_path, tmp_path):
    out = sample_grid(decoder_path, 10, seed=2, out_png=tmp_path / "g.png", cols=4)
    img = np.asarray(Image.open(out))
    assert img.shape == (3 * 28, 4 * 28)  # mode L, 3 rows x 4 cols
    tiles = dec.sample(10, seed=2, output="uint8")
    np.testing.assert_array_equal(img[28:56, 0:28], tiles[4, :, :, 0])
    np.testing.assert_array_equal(img[56:84, 28:56], tiles[9, :, :, 0])
    assert (img[56:84, 56:] == 0).all()  # empty cells
    assert [p.name for p in tmp_path.iterdir()] == ["g.png"]  # no temp file left behind


def test_save_grid_rgb_padding_and_errors(tmp_path):
    imgs = np.zeros((3, 4, 5, 3), np.float32)
    imgs[1] = 1.0
    grid = make_grid(imgs, cols=3, pad=2)
    assert grid.shape == (4, 3 * 5 + 2 * 2, 3) and grid[:, 7:12].min() == 255 and grid[:, 5:7].max() == 0
    path = save_grid(imgs, tmp_path / "rgb.png")
    assert Image.open(path).mode == "RGB" and Image.open(path).size == (10, 8)
    with pytest.raises(DataError, match=r"NHWC with 1, 3 or 4 channels"):
        save_grid(np.zeros((2, 4, 4, 2)), tmp_path / "x.png")
    with pytest.raises(ArtifactError, match="does not exist"):
        save_grid(imgs, tmp_path / "missing" / "x.png")
