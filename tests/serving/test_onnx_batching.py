"""Chunked decoding (serving/onnx_batching.py): sizes counted from the graph, results unchanged."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from keras_vae.export import contract
from keras_vae.errors import DataError
from keras_vae.serving import onnx_batching
from keras_vae.serving.onnx_decoder import OnnxDecoder
from tests.support.decoders import TEST_LATENT_DIM
from tests.support.tools import ort_reference


def test_largest_activation_is_counted_per_image(tmp_path):
    # z [N, 6] -MatMul-> [N, 160] -Reshape-> [N, 10, 4, 4] -Conv 1x1 (3 out)-> image [N, 3, 4, 4]
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 160)).astype(np.float32), "m"),
             numpy_helper.from_array(np.array([-1, 10, 4, 4], np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((3, 10, 1, 1)).astype(np.float32), "w")]
    nodes = [helper.make_node("MatMul", ["z", "m"], ["h"]), helper.make_node("Reshape", ["h", "shape"], ["r"]),
             helper.make_node("Conv", ["r", "w"], ["image"], kernel_shape=[1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 4, 4])], inits)
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert onnx_batching.largest_activation_bytes(path) == 4 * 160  # h and r: 160 floats; weights not counted


@pytest.mark.parametrize("image_bytes,limit,want", [
    (131 * 32 * 32 * 4, 1024, 4),    # celeba-64: 0.5 MiB per image -> 4 per call
    (128 * 128 * 128 * 4, 1024, 1),  # paper-256: 8 MiB per image -> one per call
    (1000, 1024, 1024), (1000, 64, 64),  # small images: up to the limit
    (0, 64, 64),                     # unknown size: no chunking
])
def test_chunk_size(image_bytes, limit, want):
    assert onnx_batching.CHUNK_ACTIVATION_BYTES == 2 << 20
    assert onnx_batching.chunk_size(image_bytes, limit) == want


def test_chunked_decode_equals_one_call(decoder_path):
    z = np.random.default_rng(3).standard_normal((7, TEST_LATENT_DIM)).astype(np.float32)
    whole = OnnxDecoder(decoder_path, chunk=64)
    chunked = OnnxDecoder(decoder_path, chunk=3)  # calls of 3, 3 and 1 latents
    got = chunked.decode(z)
    assert got.shape == (7, 28, 28, 1) and got.dtype == np.float32
    np.testing.assert_allclose(got, whole.decode(z), rtol=0, atol=contract.PARITY_TOLERANCE)
    for i in (0, 3, 6):  # rows stay in order: each equals its own single-latent decode
        np.testing.assert_allclose(got[i], ort_reference(decoder_path, z[i:i + 1])[0], rtol=0,
                                   atol=contract.PARITY_TOLERANCE)
    levels = chunked.decode(z, output="uint8").astype(int) - whole.decode(z, output="uint8").astype(int)
    assert np.max(np.abs(levels)) <= 1  # float differences of round-off size move at most one level


def test_automatic_chunk_comes_from_the_graph(decoder_path):
    dec = OnnxDecoder(decoder_path, max_batch=100)
    want = onnx_batching.chunk_size(onnx_batching.largest_activation_bytes(decoder_path), 100)
    assert dec.chunk == want and 1 <= want <= 100


@pytest.mark.parametrize("bad", [0, -2, True, 1.5])
def test_bad_chunk_is_refused(decoder_path, bad):
    with pytest.raises(DataError, match="chunk must be an integer >= 1"):
        OnnxDecoder(decoder_path, chunk=bad)
