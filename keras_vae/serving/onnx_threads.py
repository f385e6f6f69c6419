"""How many onnxruntime intra-op threads a decode call gets: one for small calls, all cores for big ones.

Measured on the 2-core CI-like machines (benchmarks/results/onnx_decoder_speed.md): onnxruntime's
default pool (one thread per core, spinning) was the slowest setting for the celeba-64 decoder at
batch 1 (spinning threads compete with everything else on a 2-core machine), and for a decoder of
a few million multiply-adds per call the pool's per-operator synchronisation costs more than the
second core gives back. So every session here has spinning off, and a call whose work (batch x
multiply-adds per image) is below ``SMALL_CALL_MACS`` runs in a one-thread session, larger calls in a
session with one thread per usable core.

The work per image is counted from the graph (Conv, ConvTranspose, MatMul, Gemm after onnx shape
inference with batch 1): no run-time measurement, so the choice is reproducible.
"""
from __future__ import annotations

import math

SMALL_CALL_MACS = 20e6  # below this, thread-pool synchronisation outweighs a second core


def batch1_shapes(path):
    """(graph proto, {tensor name: shape}) after onnx shape inference with the batch axis set to 1
    (0 marks a dimension inference could not fix; initializers included)."""
    import onnx

    proto = onnx.load(str(path))
    for value in list(proto.graph.input) + list(proto.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = 1
    proto = onnx.shape_inference.infer_shapes(proto)
    shapes = {}
    for value in list(proto.graph.value_info) + list(proto.graph.input) + list(proto.graph.output):
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else 0 for d in value.type.tensor_type.shape.dim]
    shapes.update({t.name: list(t.dims) for t in proto.graph.initializer})
    return proto, shapes


def macs_per_image(path) -> float:
    """Multiply-adds of one image through the graph at ``path`` (Conv, ConvTranspose, MatMul, Gemm)."""
    proto, shapes = batch1_shapes(path)
    total = 0.0
    for node in proto.graph.node:
        out = shapes.get(node.output[0], [])
        weight = shapes.get(node.input[1], []) if len(node.input) > 1 else []
        if not out or not weight or 0 in out:
            continue
        if node.op_type == "Conv":  # out [1, Cout, H, W], weight [Cout, Cin/g, kh, kw]
            total += math.prod(out) * math.prod(weight[1:])
        elif node.op_type == "ConvTranspose":  # weight [Cin, Cout/g, kh, kw]: each input pixel scattered
            inp = shapes.get(node.input[0], [])
            if inp and 0 not in inp:
                total += math.prod(inp[1:]) * math.prod(weight[1:])
        elif node.op_type in ("MatMul", "Gemm"):
            total += math.prod(out) * weight[0]
    return float(total)


def threads_for(batch: int, image_macs: float, cores: int) -> int:
    """Intra-op threads for one call of ``batch`` images of ``image_macs`` multiply-adds each."""
    return 1 if cores <= 1 or batch * image_macs < SMALL_CALL_MACS else cores


def session_options(threads: int):
    """onnxruntime SessionOptions: ``threads`` intra-op threads, spinning off, quiet log."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
