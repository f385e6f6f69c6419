"""Export-time graph passes that make the ONNX decoder faster in onnxruntime, without changing its function.

tf2onnx already writes the decoder NCHW inside (one Transpose after the latent's Reshape, one
before the ``image`` output) and folds each BatchNorm that follows a convolution into that
convolution. Profiling the residual decoders (celeba-64, paper-256) with onnxruntime's profiler
showed where the rest of the time goes: about half in ``ConvTranspose``, which onnxruntime runs
as a GEMM plus a col2im scatter outside its blocked (NCHWc) convolution kernels, with layout
reorders around every one of them. This module rewrites each such node:

**ConvTranspose -> Conv + DepthToSpace (sub-pixel convolution).** A transposed convolution with
stride ``s``, kernel ``k``, begin pad ``p`` (dilation 1, group 1) computes
``y[s*m + r] = sum_{kk = r + p - s*d} x[m + d] w[kk]`` for output phase ``r`` in ``0..s-1``: each
phase is an ordinary correlation of ``x`` with the taps ``kk = r + p - s*d`` of ``w``, flipped.
Stacking the ``s*s`` phases (per 2-D axis pair) as output channels of one ``Conv`` whose window
covers offsets ``d_min..d_max`` (missing taps are zeros) and interleaving them with
``DepthToSpace(blocksize=s, mode=DCR)`` gives exactly the same sums, in a different order (float32
round-off only). It applies when the output is ``s`` times the input (TF's ``padding="same"``:
``k - p_begin - p_end + output_padding == s``) and the node has at least
``SUBPIXEL_MIN_OUT_CHANNELS`` outputs; other nodes are left as they are. Resize(nearest)
followed by a Conv is *not* the same function as a transposed convolution (it repeats pixels
instead of interleaving phases), so it is not used.

**BatchNorm.** Inference BatchNorm left in the graph (``BatchNormalization`` nodes, or the
``Mul``/``Add`` pair tf2onnx writes for ``x * scale + shift``) is folded into the ``Conv`` that
produces its input when that Conv's output has no other consumer: ``W' = W * scale`` per output
channel, ``b' = b * scale + shift``. In the pre-activation residual blocks the remaining ones act
on a residual sum (``x + f(x)``), which feeds the skip path too: they cannot be folded, and become
``BatchNormalization`` nodes (``affine_to_batchnorm``), which onnxruntime's NCHWc pass runs in the
blocked layout with the following ReLU fused.

Measured (docs/performance.md): every combination of these passes is within about 5% of tf2onnx's
graph in CPU time at celeba-64 and paper-256; onnxruntime's convolutions already run near this CPU's
float32 SGEMM rate, so the graph is not where a large gain can come from.

Each pass works on the graph's node pattern, never on layer names, so it does not depend on the
exact block layout. ``optimize_decoder`` returns the rewritten proto and what it changed.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


class _Graph:
    """Initializers by name, consumers by tensor name, and fresh-name generation for one graph."""

    def __init__(self, proto: onnx.ModelProto):
        self.graph = proto.graph
        self.inits = {t.name: t for t in self.graph.initializer}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.outputs = {o.name for o in self.graph.output}
        self._names = ({t for n in self.graph.node for t in list(n.input) + list(n.output)} | set(self.inits)
                       | {n.name for n in self.graph.node})
        self._counter = 0

    def const(self, name: str) -> np.ndarray | None:
        tensor = self.inits.get(name)
        return None if tensor is None else numpy_helper.to_array(tensor)

    def fresh(self, base: str) -> str:
        while True:
            self._counter += 1
            name = f"{base}__kv{self._counter}"
            if name not in self._names:
                self._names.add(name)
                return name

    def add_init(self, base: str, value: np.ndarray) -> str:
        name = self.fresh(base)
        tensor = numpy_helper.from_array(np.ascontiguousarray(value), name)
        self.graph.initializer.append(tensor)
        self.inits[name] = tensor
        return name

    def only_consumer(self, tensor: str) -> onnx.NodeProto | None:
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and tensor not in self.outputs else None

    def drop_unused_initializers(self) -> None:
        used = {name for node in self.graph.node for name in node.input} | self.outputs
        keep = [t for t in self.graph.initializer if t.name in used]
        del self.graph.initializer[:]
        self.graph.initializer.extend(keep)


def toposort(nodes: list[onnx.NodeProto], graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """``nodes`` in an order where every input is produced before it is used (stable otherwise)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, order = list(nodes), []
    while pending:
        rest = []
        for node in pending:
            if all(name in ready for name in node.input):
                order.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"graph has a cycle or a missing input near node {rest[0].name!r}")
        pending = rest
    return order


def subpixel_weights(weight: np.ndarray, stride: tuple[int, int], pads_begin: tuple[int, int]):
    """ConvTranspose weight [Cin, Cout, kh, kw] -> (Conv weight [s_h*s_w*Cout, Cin, Kh, Kw], conv pads).

    Output channel ``(r_h * s_w + r_w) * Cout + c`` holds phase ``(r_h, r_w)`` (DepthToSpace DCR
    order). Returns None when a phase would need a negative pad (window starting after ``m``).
    """
    cin, cout, *kernel = weight.shape
    offsets = [_phase_taps(stride[axis], kernel[axis], pads_begin[axis]) for axis in range(2)]  # {r: {d: kk}}
    ds = [[d for r in axis_taps.values() for d in r] or [0] for axis_taps in offsets]
    d_min, d_max = [min(d) for d in ds], [max(d) for d in ds]
    if any(lo > 0 or hi < 0 for lo, hi in zip(d_min, d_max)):
        return None
    size = [hi - lo + 1 for lo, hi in zip(d_min, d_max)]
    out = np.zeros((stride[0] * stride[1] * cout, cin, size[0], size[1]), weight.dtype)
    for rh in range(stride[0]):
        for rw in range(stride[1]):
            block = (rh * stride[1] + rw) * cout
            for dh, kh in offsets[0][rh].items():
                for dw, kw in offsets[1][rw].items():
                    out[block:block + cout, :, dh - d_min[0], dw - d_min[1]] = weight[:, :, kh, kw].T
    pads = [-d_min[0], -d_min[1], d_max[0], d_max[1]]
    return out, pads


# Sub-pixel rewrite only for ConvTranspose nodes with at least this many output channels. Each phase
# Conv is a GEMM with Cout rows; below one AVX-512 register of rows (16 floats) MLAS neither blocks
# it (NCHWc) nor fills its GEMM kernel, while ConvTranspose's own GEMM has Cout * k * k rows. Measured
# on celeba-64's last up-sampling block (131 -> 3 channels, 32x32 -> 64x64, batch 1, one thread): the
# four phase Convs took 0.69 ms of kernel time, the ConvTranspose 0.17 ms.
SUBPIXEL_MIN_OUT_CHANNELS = 16


def rewrite_conv_transpose(proto: onnx.ModelProto, split: bool = True, min_out_channels: int = 1) -> int:
    """Replace every eligible 2-D ConvTranspose with at least ``min_out_channels`` output channels by
    Conv + DepthToSpace (same function); returns how many."""
    g = _Graph(proto)
    new_nodes, count = [], 0
    for node in g.graph.node:
        replacement = _subpixel_nodes(g, node, split, min_out_channels) if node.op_type == "ConvTranspose" else None
        if replacement is None:
            new_nodes.append(node)
        else:
            new_nodes.extend(replacement)
            count += 1
    del g.graph.node[:]
    g.graph.node.extend(new_nodes)
    g.drop_unused_initializers()
    return count


def _phase_taps(stride: int, kernel: int, pad: int) -> dict[int, dict[int, int]]:
    """{phase r: {input offset d: kernel tap kk}} with y[s*m + r] += x[m + d] * w[kk] along one axis."""
    taps: dict[int, dict[int, int]] = {r: {} for r in range(stride)}
    for r in range(stride):
        for kk in range(kernel):
            if (r + pad - kk) % stride == 0:
                taps[r][(r + pad - kk) // stride] = kk
    return taps


def _phase_conv(weight: np.ndarray, taps_h: dict[int, int], taps_w: dict[int, int]):
    """One phase as a correlation: (Conv weight [Cout, Cin, kh, kw], pads) or None if it needs a negative pad."""
    if not taps_h or not taps_w:
        return None
    lo = (min(taps_h), min(taps_w))
    hi = (max(taps_h), max(taps_w))
    if lo[0] > 0 or lo[1] > 0 or hi[0] < 0 or hi[1] < 0:
        return None
    cin, cout = weight.shape[:2]
    out = np.zeros((cout, cin, hi[0] - lo[0] + 1, hi[1] - lo[1] + 1), weight.dtype)
    for dh, kh in taps_h.items():
        for dw, kw in taps_w.items():
            out[:, :, dh - lo[0], dw - lo[1]] = weight[:, :, kh, kw].T
    return out, [-lo[0], -lo[1], hi[0], hi[1]]


def _subpixel_nodes(g: _Graph, node: onnx.NodeProto, split: bool = True, min_out_channels: int = 1):
    weight = g.const(node.input[1])
    a = _attrs(node)
    if weight is None or weight.ndim != 4 or a.get("group", 1) != 1 or "output_shape" in a:
        return None
    if weight.shape[1] < min_out_channels:  # ConvTranspose weight [Cin, Cout, kh, kw]
        return None
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    stride = tuple(a.get("strides", [1, 1]))
    kernel = tuple(a.get("kernel_shape", weight.shape[2:]))
    pads = list(a.get("pads", [0, 0, 0, 0]))
    out_pad = list(a.get("output_padding", [0, 0]))
    if any(d != 1 for d in a.get("dilations", [1, 1])) or stride[0] != stride[1] or stride[0] < 2:
        return None
    if tuple(weight.shape[2:]) != kernel:
        return None
    # output size == stride * input size on both axes (TF "same")
    if any(kernel[i] - pads[i] - pads[i + 2] + out_pad[i] != stride[i] for i in range(2)):
        return None
    s = stride[0]
    bias = None
    if len(node.input) > 2 and node.input[2]:
        bias = g.const(node.input[2])
        if bias is None:
            return None
    base = node.name or "convT"
    taps = [_phase_taps(s, kernel[i], pads[i]) for i in range(2)]
    nodes, phase_outputs = [], []
    phase_convs = [_phase_conv(weight, taps[0][rh], taps[1][rw]) for rh in range(s) for rw in range(s)]
    if split and all(c is not None for c in phase_convs):  # else one Conv (phases without taps are zeros)
        for index, (w, conv_pads) in enumerate(phase_convs):
            rh, rw = divmod(index, s)
            inputs = [node.input[0], g.add_init(node.input[1] + f"_phase{rh}{rw}", w)]
            if bias is not None:
                inputs.append(node.input[2])
            out = g.fresh(node.output[0] + f"_phase{rh}{rw}")
            nodes.append(helper.make_node("Conv", inputs, [out], name=g.fresh(f"{base}_phase{rh}{rw}"),
                                          kernel_shape=list(w.shape[2:]), pads=conv_pads, strides=[1, 1]))
            phase_outputs.append(out)
        phases = g.fresh(node.output[0] + "_phases")
        nodes.append(helper.make_node("Concat", phase_outputs, [phases], name=g.fresh(f"{base}_concat"), axis=1))
    else:
        result = subpixel_weights(weight, stride, (pads[0], pads[1]))
        if result is None:
            return None
        conv_w, conv_pads = result
        inputs = [node.input[0], g.add_init(node.input[1] + "_subpixel", conv_w)]
        if bias is not None:
            inputs.append(g.add_init(node.input[2] + "_subpixel", np.tile(bias, s * s)))
        phases = g.fresh(node.output[0] + "_phases")
        nodes.append(helper.make_node("Conv", inputs, [phases], name=g.fresh(f"{base}_subpixel"),
                                      kernel_shape=list(conv_w.shape[2:]), pads=conv_pads, strides=[1, 1]))
    nodes.append(helper.make_node("DepthToSpace", [phases], [node.output[0]], name=g.fresh(f"{base}_d2s"),
                                  blocksize=s, mode="DCR"))
    return nodes


def merge_parallel_convs(proto: onnx.ModelProto) -> int:
    """``Add(Conv(a, W1), Conv(b, W2))`` -> ``Conv(Concat(a, b), [W1 | W2])`` (also ConvTranspose); returns how many.

    Both convolutions must have the same attributes, no bias (or constant biases, which are summed)
    and no other consumer; the sum over the concatenated input channels is the sum of both sums.
    One larger GEMM instead of two smaller ones and an Add: the up-sampling block's two transposed
    convolutions (shortcut and residual path) are such a pair.
    """
    merged = 0
    while True:
        g = _Graph(proto)
        producer = {o: n for n in g.graph.node for o in n.output}
        found = None
        for node in g.graph.node:
            if node.op_type != "Add" or len(node.input) != 2 or node.input[0] == node.input[1]:
                continue
            convs = [producer.get(t) for t in node.input]
            if any(c is None or c.op_type not in ("Conv", "ConvTranspose") for c in convs):
                continue
            c1, c2 = convs
            if c1.op_type != c2.op_type or _attrs(c1) != _attrs(c2) or _attrs(c1).get("group", 1) != 1:
                continue
            if any(g.only_consumer(c.output[0]) is not node for c in convs):
                continue
            w = [g.const(c.input[1]) for c in convs]
            if any(x is None or x.ndim != 4 for x in w):
                continue
            axis = 1 if c1.op_type == "Conv" else 0  # Conv: [Cout, Cin, ...]; ConvTranspose: [Cin, Cout, ...]
            other = 1 - axis
            if w[0].shape[other] != w[1].shape[other] or w[0].shape[2:] != w[1].shape[2:]:
                continue
            biases = []
            for c in convs:
                if len(c.input) > 2 and c.input[2]:
                    biases.append(g.const(c.input[2]))
            if any(b is None for b in biases):
                continue
            found = (node, c1, c2, np.concatenate(w, axis=axis), sum(biases) if biases else None)
            break
        if found is None:
            return merged
        add, c1, c2, weight, bias = found
        cat = g.fresh(add.output[0] + "_concat_in")
        concat = helper.make_node("Concat", [c1.input[0], c2.input[0]], [cat], name=g.fresh("merged_concat"), axis=1)
        inputs = [cat, g.add_init(c1.input[1] + "_merged", weight)]
        if bias is not None:
            inputs.append(g.add_init(c1.input[1] + "_merged_bias", bias))
        conv = helper.make_node(c1.op_type, inputs, list(add.output), name=g.fresh((c1.name or "conv") + "_merged"))
        conv.attribute.extend(c1.attribute)
        nodes = []
        for n in g.graph.node:
            if n is c1:
                nodes.extend([concat, conv])
            elif n is not c2 and n is not add:
                nodes.append(n)
        del g.graph.node[:]
        g.graph.node.extend(toposort(nodes, g.graph))
        g.drop_unused_initializers()
        merged += 1


def _per_channel(value: np.ndarray | None, channels: int) -> np.ndarray | None:
    """A constant that broadcasts per channel over NCHW ([C,1,1], [1,C,1,1], scalar) -> [C]; else None."""
    if value is None:
        return None
    if value.size == 1:
        return np.full(channels, value.reshape(()), value.dtype)
    shape = list(value.shape)
    while shape and shape[0] == 1 and len(shape) > 3:
        shape.pop(0)
    if len(shape) == 3 and shape[0] == channels and shape[1] == shape[2] == 1:
        return value.reshape(channels)
    return None


def fold_affine_into_conv(proto: onnx.ModelProto) -> int:
    """Fold BatchNormalization, or Mul/Add by per-channel constants, into the Conv before it; returns how many."""
    folded = 0
    while True:
        g = _Graph(proto)
        change = None
        for node in g.graph.node:
            if node.op_type != "Conv" or len(node.output) != 1:
                continue
            weight = g.const(node.input[1])
            if weight is None or weight.ndim != 4 or _attrs(node).get("group", 1) != 1:
                continue
            nxt = g.only_consumer(node.output[0])
            if nxt is None:
                continue
            cout = weight.shape[0]
            scale = shift = None
            if nxt.op_type == "BatchNormalization" and len(nxt.output) == 1 and nxt.input[0] == node.output[0]:
                gamma, beta, mean, var = (g.const(n) for n in nxt.input[1:5])
                if any(v is None for v in (gamma, beta, mean, var)):
                    continue
                eps = _attrs(nxt).get("epsilon", 1e-5)
                scale = (gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps))
                shift = beta.astype(np.float64) - mean.astype(np.float64) * scale
            elif nxt.op_type in ("Mul", "Add") and len(nxt.input) == 2:
                other = nxt.input[1] if nxt.input[0] == node.output[0] else nxt.input[0]
                value = _per_channel(g.const(other), cout)
                if value is None or other == node.output[0]:
                    continue
                value = value.astype(np.float64)
                scale, shift = (value, np.zeros(cout)) if nxt.op_type == "Mul" else (np.ones(cout), value)
            else:
                continue
            change = (node, nxt, weight, scale, shift)
            break
        if change is None:
            break
        node, nxt, weight, scale, shift = change
        bias = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else np.zeros(weight.shape[0])
        if bias is None:
            break
        new_w = (weight.astype(np.float64) * scale[:, None, None, None]).astype(weight.dtype)
        new_b = (bias.astype(np.float64) * scale + shift).astype(weight.dtype)
        inputs = [node.input[0], g.add_init(node.input[1] + "_folded", new_w), g.add_init(node.input[1] + "_bias", new_b)]
        del node.input[:]
        node.input.extend(inputs)
        node.output[0] = nxt.output[0]
        nodes = [n for n in g.graph.node if n is not nxt]
        del g.graph.node[:]
        g.graph.node.extend(nodes)
        g.drop_unused_initializers()
        folded += 1
    return folded


def affine_to_batchnorm(proto: onnx.ModelProto) -> int:
    """``Add(Mul(x, scale), shift)`` with per-channel constants -> ``BatchNormalization(x, scale, shift,
    mean=0, var=1, epsilon=0)``; returns how many.

    The same function (``(x - 0) / sqrt(1 + 0) * scale + shift``; at most one rounding less where
    onnxruntime computes it as one fused multiply-add). tf2onnx writes an inference BatchNorm as this
    Mul/Add pair; the ones left after ``fold_affine_into_conv`` normalise a residual sum (the
    pre-activation blocks' ``BN(x + f(x))``). onnxruntime's NCHWc layout pass (graph optimisation level
    ALL, the default) turns a ``BatchNormalization`` whose input is already blocked into a blocked
    depthwise convolution with the following ReLU fused, and lets the producing convolution fuse the
    residual Add; two elementwise passes over NCHW tensors plus the layout reorders around them go
    away. A Mul/Add pair stays as it is: the NCHWc pass does not handle it.
    """
    g = _Graph(proto)
    channels_of = _channel_counts(proto)
    replaced, drop = {}, set()
    for node in g.graph.node:
        if node.op_type != "Mul" or len(node.input) != 2 or node.input[0] == node.input[1]:
            continue
        x, const = (node.input[0], node.input[1]) if g.const(node.input[1]) is not None else (node.input[1], node.input[0])
        raw = g.const(const)
        channels = channels_of.get(x)  # x must be [N, C, H, W] with the constants' C (no broadcasting)
        if raw is None or raw.dtype != np.float32 or raw.shape != (1, channels, 1, 1):
            continue
        scale, add = _per_channel(raw, channels), g.only_consumer(node.output[0])
        if scale is None or add is None or add.op_type != "Add" or len(add.input) != 2 or id(add) in drop:
            continue
        other = add.input[1] if add.input[0] == node.output[0] else add.input[0]
        shift = g.const(other) if other != node.output[0] else None
        if shift is None or shift.dtype != np.float32 or shift.shape != (1, channels, 1, 1):
            continue
        shift = shift.reshape(channels)
        zeros, ones = np.zeros(channels, np.float32), np.ones(channels, np.float32)
        inputs = [x] + [g.add_init(f"{const}_bn_{part}", value.astype(np.float32))
                        for part, value in (("scale", scale), ("shift", shift), ("mean", zeros), ("var", ones))]
        replaced[id(node)] = helper.make_node("BatchNormalization", inputs, [add.output[0]],
                                              name=g.fresh((node.name or "affine") + "_bn"), epsilon=0.0)
        drop.add(id(add))
    nodes = [replaced.get(id(n), n) for n in g.graph.node if id(n) not in drop]
    del g.graph.node[:]
    g.graph.node.extend(nodes)
    g.drop_unused_initializers()
    return len(replaced)


def _channel_counts(proto: onnx.ModelProto) -> dict[str, int]:
    """{tensor name: C} for every rank-4 float tensor whose axis 1 onnx shape inference knows."""
    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - no shapes: the pass then changes nothing
        return {}
    out = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and len(dims) == 4 and dims[1].HasField("dim_value"):
            out[value.name] = int(dims[1].dim_value)
    return out


ALL_PASSES = ("fold", "merge", "subpixel", "bn")
DEFAULT_PASSES = ("fold", "merge", "subpixel", "bn")


def optimize_decoder(proto: onnx.ModelProto, passes=DEFAULT_PASSES,
                     split_phases: bool = True) -> tuple[onnx.ModelProto, dict[str, int]]:
    """A rewritten copy of ``proto`` (same inputs, outputs, metadata) and how often each pass fired.

    ``passes``: any of "fold" (BatchNorm / per-channel Mul, Add into the Conv before it), "merge"
    (two convolutions summed -> one over concatenated inputs), "subpixel" (ConvTranspose -> Conv +
    DepthToSpace, for nodes with at least ``SUBPIXEL_MIN_OUT_CHANNELS`` outputs; ``split_phases`` gives
    each phase its own exact-size Conv, else one Conv whose kernel covers every phase, padded with
    zero taps), "bn" (the remaining per-channel Mul/Add pairs -> BatchNormalization, which
    onnxruntime's NCHWc pass runs blocked with its ReLU fused). They run in that order.
    """
    unknown = set(passes) - set(ALL_PASSES)
    if unknown:
        raise ValueError(f"unknown graph passes {sorted(unknown)}: choose from {list(ALL_PASSES)}")
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    report = {}
    if "fold" in passes:
        report["folded_into_conv"] = fold_affine_into_conv(out)
    if "merge" in passes:
        report["merged_conv_pairs"] = merge_parallel_convs(out)
    if "subpixel" in passes:
        report["conv_transpose_to_subpixel"] = rewrite_conv_transpose(out, split_phases, SUBPIXEL_MIN_OUT_CHANNELS)
    if "bn" in passes:
        report["affine_to_batchnorm"] = affine_to_batchnorm(out)
    return out, report


def graph_summary(proto: onnx.ModelProto) -> dict[str, int]:
    """Count of each op type in the graph (what export.json records about the shipped decoder)."""
    counts: dict[str, int] = defaultdict(int)
    for node in proto.graph.node:
        counts[node.op_type] += 1
    return dict(sorted(counts.items()))


def optimize_file(path, passes=DEFAULT_PASSES) -> dict[str, object]:
    """Rewrite the ONNX file at ``path`` in place (checked before it is written); returns the report."""
    from keras_vae.export.onnx_export import save_checked

    proto = onnx.load(str(path))
    before = graph_summary(proto)
    optimized, report = optimize_decoder(proto, passes)
    save_checked(optimized, path)
    return {"passes": list(passes), "rewrites": report, "ops_before": before, "ops_after": graph_summary(optimized)}
