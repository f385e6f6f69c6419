"""The export-time graph passes (export/onnx_optimize.py): same function, different graph.

Unit graphs are built with onnx.helper and run in onnxruntime before and after a pass. Two float32
evaluations of the same sum in different orders differ by at most n * eps * sum|terms| (n terms,
eps the float32 unit round-off); sum|terms| is computed by running the original graph with every
weight and input replaced by its absolute value, so each tolerance below comes from the compared
sums, not from one machine's run.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from keras_vae.export.onnx_optimize import (fold_affine_into_conv, graph_summary, merge_parallel_convs, optimize_decoder,
                                  rewrite_conv_transpose)

EPS = float(np.finfo(np.float32).eps)


def _run(proto, feeds):
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def _abs_model(proto):
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    for init in out.graph.initializer:
        init.CopyFrom(numpy_helper.from_array(np.abs(numpy_helper.to_array(init)), init.name))
    return out


def _model(nodes, inputs, output_shape, inits):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, output_shape)],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _assert_same_function(before, after, feeds, n_terms):
    """after(x) == before(x) up to n_terms * eps * sum|terms| (round-off of a reordered float32 sum)."""
    want, got = _run(before, feeds), _run(after, feeds)
    assert got.shape == want.shape
    bound = (n_terms + 2) * EPS * _run(_abs_model(before), {k: np.abs(v) for k, v in feeds.items()})
    assert np.all(np.abs(got - want) <= bound + 1e-30), float(np.max(np.abs(got - want) - bound))


# stride, kernel, pads (h0, w0, h1, w1), output_padding, eligible (output = stride * input)
CONV_T_CASES = [
    (2, 3, [0, 0, 1, 1], [0, 0], True),   # TF Conv2DTranspose(3, 2, "same"), what the decoders use
    (2, 4, [1, 1, 1, 1], [0, 0], True),
    (2, 2, [0, 0, 0, 0], [0, 0], True),
    (2, 4, [2, 2, 0, 0], [0, 0], True),
    (3, 3, [0, 0, 0, 0], [0, 0], True),
    (3, 5, [1, 1, 1, 1], [0, 0], True),
    (2, 3, [1, 1, 1, 1], [1, 1], True),   # PyTorch-style padding=1, output_padding=1
    (2, 3, [1, 1, 1, 1], [0, 0], False),  # output 2n - 1: not a sub-pixel convolution
    (2, 1, [0, 0, 0, 0], [1, 1], True),   # kernel smaller than stride: phases without taps are zero (+ bias)
]


@pytest.mark.parametrize("split", [True, False], ids=["per-phase", "one-conv"])
@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("stride,kernel,pads,out_pad,eligible", CONV_T_CASES)
def test_conv_transpose_becomes_subpixel_conv(stride, kernel, pads, out_pad, eligible, bias, split):
    rng = np.random.default_rng(stride * 100 + kernel)
    cin, cout, h, w = 3, 5, 4, 6
    inits = {"w": rng.standard_normal((cin, cout, kernel, kernel))}
    inputs = ["x", "w"]
    if bias:
        inits["b"] = rng.standard_normal(cout)
        inputs.append("b")
    node = helper.make_node("ConvTranspose", inputs, ["y"], strides=[stride, stride], kernel_shape=[kernel, kernel],
                            pads=pads, output_padding=out_pad)
    out_h = stride * (h - 1) + kernel - pads[0] - pads[2] + out_pad[0]
    out_w = stride * (w - 1) + kernel - pads[1] - pads[3] + out_pad[1]
    before = _model([node], [("x", [2, cin, h, w])], [2, cout, out_h, out_w], inits)
    after = onnx.ModelProto()
    after.CopyFrom(before)
    count = rewrite_conv_transpose(after, split=split)
    onnx.checker.check_model(after, full_check=True)
    ops = graph_summary(after)
    if eligible:
        assert (out_h, out_w) == (stride * h, stride * w)
        assert count == 1 and "ConvTranspose" not in ops and ops["DepthToSpace"] == 1
        assert ops["Conv"] == (stride * stride if split and kernel >= stride else 1)
    else:
        assert count == 0 and ops == {"ConvTranspose": 1}
    x = rng.standard_normal((2, cin, h, w)).astype(np.float32)
    _assert_same_function(before, after, {"x": x}, n_terms=cin * kernel * kernel + 1)


@pytest.mark.parametrize("op", ["Conv", "ConvTranspose"])
def test_summed_convolutions_merge_into_one(op):
    rng = np.random.default_rng(1)
    ca, cb, cout, h = 3, 4, 6, 5
    shape = (lambda ci: (cout, ci, 3, 3)) if op == "Conv" else (lambda ci: (ci, cout, 3, 3))
    attrs = dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]) if op == "Conv" else \
        dict(kernel_shape=[3, 3], strides=[2, 2], pads=[0, 0, 1, 1])
    inits = {"wa": rng.standard_normal(shape(ca)), "wb": rng.standard_normal(shape(cb)),
             "ba": rng.standard_normal(cout), "bb": rng.standard_normal(cout)}
    nodes = [helper.make_node(op, ["a", "wa", "ba"], ["pa"], **attrs),
             helper.make_node(op, ["b", "wb", "bb"], ["pb"], **attrs),
             helper.make_node("Add", ["pa", "pb"], ["y"])]
    out = h if op == "Conv" else 2 * h
    before = _model(nodes, [("a", [1, ca, h, h]), ("b", [1, cb, h, h])], [1, cout, out, out], inits)
    after = onnx.ModelProto()
    after.CopyFrom(before)
    assert merge_parallel_convs(after) == 1
    onnx.checker.check_model(after, full_check=True)
    assert graph_summary(after) == {"Concat": 1, op: 1}
    feeds = {"a": rng.standard_normal((1, ca, h, h)).astype(np.float32),
             "b": rng.standard_normal((1, cb, h, h)).astype(np.float32)}
    _assert_same_function(before, after, feeds, n_terms=(ca + cb) * 9 + 2)


def test_convolutions_that_differ_or_are_shared_are_not_merged():
    rng = np.random.default_rng(2)
    inits = {"w3": rng.standard_normal((4, 2, 3, 3)), "w1": rng.standard_normal((4, 2, 1, 1))}
    different = [helper.make_node("Conv", ["x", "w3"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
                 helper.make_node("Conv", ["x", "w1"], ["q"], kernel_shape=[1, 1]),
                 helper.make_node("Add", ["p", "q"], ["y"])]
    shared = [helper.make_node("Conv", ["x", "w3"], ["p"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
              helper.make_node("Conv", ["x", "w3"], ["q"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
              helper.make_node("Add", ["p", "q"], ["s"]), helper.make_node("Mul", ["s", "p"], ["y"])]
    for nodes in (different, shared):
        proto = _model(nodes, [("x", [1, 2, 5, 5])], [1, 4, 5, 5], inits)
        assert merge_parallel_convs(proto) == 0


@pytest.mark.parametrize("form", ["BatchNormalization", "Mul+Add"])
def test_affine_after_conv_folds_into_it(form):
    rng = np.random.default_rng(3)
    cin, cout = 3, 4
    gamma, beta = rng.uniform(0.5, 1.5, cout), rng.standard_normal(cout)
    mean, var = rng.standard_normal(cout), rng.uniform(0.5, 2.0, cout)
    inits = {"w": rng.standard_normal((cout, cin, 3, 3)), "b": rng.standard_normal(cout)}
    conv = helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    if form == "BatchNormalization":
        inits.update(gamma=gamma, beta=beta, mean=mean, var=var)
        tail = [helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"], epsilon=1e-3)]
        scale = gamma / np.sqrt(var + 1e-3)
        shift = beta - mean * scale
    else:
        scale, shift = gamma, beta
        inits.update(s=scale.reshape(1, cout, 1, 1), t=shift.reshape(cout, 1, 1))
        tail = [helper.make_node("Mul", ["c", "s"], ["m"]), helper.make_node("Add", ["t", "m"], ["y"])]
    before = _model([conv, *tail], [("x", [2, cin, 5, 5])], [2, cout, 5, 5], inits)
    after = onnx.ModelProto()
    after.CopyFrom(before)
    assert fold_affine_into_conv(after) == len(tail)
    assert graph_summary(after) == {"Conv": 1}
    x = rng.standard_normal((2, cin, 5, 5)).astype(np.float32)
    want, got = _run(before, {"x": x}), _run(after, {"x": x})
    # folded weights are rounded once more (relative eps each): bound on sum|x| |w| |scale| + |b scale| + |shift|
    conv_only = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    terms = _run(_abs_model(_model([conv_only], [("x", [2, cin, 5, 5])], [2, cout, 5, 5],
                                   {"w": inits["w"], "b": inits["b"]})), {"x": np.abs(x)})
    bound = (cin * 9 + 6) * EPS * (terms * np.abs(scale)[None, :, None, None] + np.abs(shift)[None, :, None, None])
    assert np.all(np.abs(got - want) <= bound)


def test_conv_whose_output_is_shared_is_not_folded():
    rng = np.random.default_rng(4)
    inits = {"w": rng.standard_normal((2, 2, 1, 1)), "s": rng.standard_normal((2, 1, 1))}
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("Mul", ["c", "s"], ["m"]), helper.make_node("Add", ["m", "c"], ["y"])]
    proto = _model(nodes, [("x", [1, 2, 3, 3])], [1, 2, 3, 3], inits)
    assert fold_affine_into_conv(proto) == 0


def test_unknown_pass_is_refused():
    with pytest.raises(ValueError, match="unknown graph passes"):
        optimize_decoder(onnx.ModelProto(), passes=("fold", "winograd"))


@pytest.fixture(scope="module")
def tiny_resnet_decoder(tmp_path_factory):
    """The paper's decoder at its smallest ('tiny' preset) with random BatchNorm statistics, as tf2onnx writes it."""
    keras = pytest.importorskip("keras")
    import tensorflow as tf

    from keras_vae.export import onnx_export
    from keras_vae.export.signatures import make_functions
    from keras_vae.config import merge
    from keras_vae.models import build_model
    from keras_vae.config.presets import get_preset

    # 16 filters: the inner up-sampling block gets the sub-pixel rewrite, the last (to 1 channel) keeps ConvTranspose
    cfg = merge(get_preset("tiny"), {"model": {"decoder_identity_blocks": 1, "filters": (16,)}})
    model = build_model(cfg)
    rng = np.random.default_rng(5)
    for layer in model.decoder._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):  # non-trivial statistics: folding is visible
            shape = layer.gamma.shape
            layer.set_weights([rng.uniform(0.5, 1.5, shape), rng.normal(0, 0.3, shape),
                               rng.normal(0, 0.3, shape), rng.uniform(0.5, 2.0, shape)])
    fn, spec = make_functions(model)["serving_default"]
    path = tmp_path_factory.mktemp("tiny-decoder") / "decoder.onnx"
    onnx_export.convert_function(fn, spec, onnx_export.model_metadata(model, "decoder", "run", "sha"), path)
    return model, fn, path, tf


def test_tiny_resnet_decoder_keeps_parity_with_keras(tiny_resnet_decoder, tmp_path):
    from keras_vae.export import contract
    from keras_vae.export.onnx_optimize import optimize_file

    model, fn, path, tf = tiny_resnet_decoder
    optimized = tmp_path / "decoder.onnx"
    optimized.write_bytes(path.read_bytes())
    report = optimize_file(optimized)
    ops = report["ops_after"]
    assert report["ops_before"].get("ConvTranspose", 0) == 4  # two per up-sampling block
    assert report["rewrites"]["merged_conv_pairs"] == 2  # each up-sampling block's two transposed convs
    assert report["rewrites"]["conv_transpose_to_subpixel"] == 1 and ops["ConvTranspose"] == 1  # 16 vs 1 output channels
    assert report["rewrites"]["affine_to_batchnorm"] == ops["BatchNormalization"] > 0  # BN of residual sums
    assert ops["Mul"] == report["ops_before"]["Mul"] - ops["BatchNormalization"]
    assert ops.get("Transpose", 0) <= 2  # NCHW inside: transposes only at the edges
    proto = onnx.load(str(optimized))
    assert {p.key: p.value for p in proto.metadata_props} == {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    session = ort.InferenceSession(str(optimized), providers=["CPUExecutionProvider"])
    for batch in contract.PARITY_BATCH_SIZES:
        z = np.random.default_rng(batch).standard_normal((batch, model.latent_dim)).astype(np.float32)
        want = model.to_unit(model.decode(tf.constant(z), training=False)).numpy()
        got = session.run(None, {contract.LATENT_INPUT: z})[0]
        assert np.max(np.abs(got - want)) <= contract.PARITY_TOLERANCE


@pytest.mark.parametrize("cout", [3, 16])
def test_subpixel_rewrite_skips_few_output_channels(cout):
    """optimize_decoder keeps ConvTranspose below SUBPIXEL_MIN_OUT_CHANNELS outputs (faster in MLAS), rewrites above."""
    from keras_vae.export.onnx_optimize import SUBPIXEL_MIN_OUT_CHANNELS

    rng = np.random.default_rng(cout)
    cin, h = 4, 5
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], kernel_shape=[3, 3], pads=[0, 0, 1, 1])
    before = _model([node], [("x", [1, cin, h, h])], [1, cout, 2 * h, 2 * h], {"w": rng.standard_normal((cin, cout, 3, 3))})
    after, report = optimize_decoder(before, passes=("subpixel",))
    rewritten = cout >= SUBPIXEL_MIN_OUT_CHANNELS
    assert report["conv_transpose_to_subpixel"] == int(rewritten)
    assert ("ConvTranspose" in graph_summary(after)) != rewritten
    x = rng.standard_normal((1, cin, h, h)).astype(np.float32)
    _assert_same_function(before, after, {"x": x}, n_terms=cin * 9 + 1)


@pytest.mark.parametrize("case", ["pair", "scalar", "shared", "broadcast"])
def test_per_channel_mul_add_becomes_batchnorm(case):
    """Mul/Add by [1, C, 1, 1] constants -> BatchNormalization(mean 0, var 1, eps 0); other patterns untouched."""
    from keras_vae.export.onnx_optimize import affine_to_batchnorm

    rng = np.random.default_rng(7)
    c, h = 6, 4
    xc = 1 if case == "broadcast" else c  # x with one channel broadcast against C constants: not a BatchNorm
    scale_shape = (1, 1, 1, 1) if case == "scalar" else (1, c, 1, 1)
    out_c = c if case != "scalar" else xc
    inits = {"s": rng.uniform(-2, 2, scale_shape), "b": rng.standard_normal(scale_shape)}
    nodes = [helper.make_node("Mul", ["x", "s"], ["m"]), helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Relu", ["a"], ["r"] if case == "shared" else ["y"])]
    if case == "shared":  # the Mul's output also feeds the result: the pair cannot become one node
        nodes.append(helper.make_node("Add", ["r", "m"], ["y"]))
    before = _model(nodes, [("x", [2, xc, h, h])], [2, out_c, h, h], inits)
    after = onnx.ModelProto()
    after.CopyFrom(before)
    count = affine_to_batchnorm(after)
    onnx.checker.check_model(after, full_check=True)
    if case == "pair":
        assert count == 1 and graph_summary(after) == {"BatchNormalization": 1, "Relu": 1}
    else:
        assert count == 0 and graph_summary(after) == graph_summary(before)
    x = rng.standard_normal((2, xc, h, h)).astype(np.float32)
    _assert_same_function(before, after, {"x": x}, n_terms=2)
