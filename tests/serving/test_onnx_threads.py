"""Intra-op thread choice of OnnxDecoder (serving/onnx_threads.py): work counted from the graph, not timed."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from keras_vae.errors import DataError
from keras_vae.serving import onnx_threads
from keras_vae.serving.onnx_decoder import OnnxDecoder
from tests.support.decoders import TEST_LATENT_DIM


def test_macs_per_image_counts_conv_conv_transpose_and_matmul(tmp_path):
    # z [N, 6] -MatMul-> [N, 2*4*4] -Reshape-> [N, 2, 4, 4] -Conv 3x3 (5 out)-> -ConvT 3x3/2 (3 out)-> [N, 3, 8, 8]
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 32)).astype(np.float32), "m"),
             numpy_helper.from_array(np.array([-1, 2, 4, 4], np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((5, 2, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((5, 3, 3, 3)).astype(np.float32), "wt")]
    nodes = [helper.make_node("MatMul", ["z", "m"], ["h"]), helper.make_node("Reshape", ["h", "shape"], ["r"]),
             helper.make_node("Conv", ["r", "w"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("ConvTranspose", ["c", "wt"], ["image"], kernel_shape=[3, 3], strides=[2, 2],
                              pads=[0, 0, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["N", 6])],
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])], inits)
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    matmul = 6 * 32
    conv = (5 * 4 * 4) * (2 * 3 * 3)  # every output value: Cin * kh * kw
    conv_t = (5 * 4 * 4) * (3 * 3 * 3)  # every input value scattered to Cout * kh * kw outputs
    assert onnx_threads.macs_per_image(path) == matmul + conv + conv_t


@pytest.mark.parametrize("batch,macs,cores,want", [
    (1, 1e6, 2, 1),            # small call: one thread
    (64, 1e6, 2, 2),           # 64 MMAC: all cores
    (1, 8.5e8, 2, 2),          # the celeba-64 decoder at batch 1 (848 MMAC)
    (1, 8.5e8, 1, 1),          # one core: one thread
    (19, 1e6, 16, 1), (20, 1e6, 16, 16),  # the threshold itself
])
def test_threads_for(batch, macs, cores, want):
    assert onnx_threads.SMALL_CALL_MACS == 20e6
    assert onnx_threads.threads_for(batch, macs, cores) == want


def test_decoder_uses_one_thread_for_small_calls_and_all_cores_for_large(decoder_path, monkeypatch):
    monkeypatch.setattr("keras_vae.serving.onnx_decoder.usable_cores", lambda: 4)
    dec = OnnxDecoder(decoder_path, chunk=1024)  # one call per decode: the thread count follows the batch
    macs = onnx_threads.macs_per_image(decoder_path)
    assert macs > 0
    small, large = 1, int(np.ceil(onnx_threads.SMALL_CALL_MACS / macs)) + 1
    assert dec.threads_for(small) == 1 and dec.threads_for(large) == 4
    z = np.random.default_rng(0).standard_normal((large, TEST_LATENT_DIM)).astype(np.float32)
    out_large = dec.decode(z)
    assert sorted(dec._sessions) == [1, 4]  # the second session appears only when needed
    one = OnnxDecoder(decoder_path, threads=1)
    assert one.threads_for(large) == 1
    # the thread count changes how the work is split, not the function
    np.testing.assert_allclose(one.decode(z), out_large, rtol=0, atol=4 * np.finfo(np.float32).eps)
    np.testing.assert_allclose(dec.decode(z[:small]), out_large[:small], rtol=0, atol=4 * np.finfo(np.float32).eps)


@pytest.mark.parametrize("bad", [0, -1, True])
def test_bad_thread_count_is_refused(decoder_path, bad):
    with pytest.raises(DataError, match="threads must be an integer >= 1"):
        OnnxDecoder(decoder_path, threads=bad)


def test_thread_count_follows_the_chunk_not_the_batch(decoder_path, monkeypatch):
    """A decode of many latents runs as chunks: each onnxruntime call's work decides its threads."""
    monkeypatch.setattr("keras_vae.serving.onnx_decoder.usable_cores", lambda: 4)
    macs = onnx_threads.macs_per_image(decoder_path)
    per_call = int(np.ceil(onnx_threads.SMALL_CALL_MACS / macs))  # the smallest call that gets all cores
    assert OnnxDecoder(decoder_path, chunk=per_call - 1).threads_for(10 * per_call) == 1
    assert OnnxDecoder(decoder_path, chunk=per_call).threads_for(10 * per_call) == 4
