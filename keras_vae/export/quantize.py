"""Smaller decoders: float16 weights and onnxruntime dynamic (int8) quantization.

Both keep float32 inputs and outputs, the tensor names and the metadata of ``decoder.onnx``
(plus ``keras_vae.training.precision``), so consumers load them like the float32 file. Their error
against the float32 decoder is measured, not bounded: it is reported in export.json.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from keras_vae.export import contract
from keras_vae.export.onnx_export import load_session, save_checked, set_metadata


def to_float16(src: str | Path, dst: str | Path, metadata: dict[str, str]) -> None:
    """float32 -> float16 weights and arithmetic (float32 I/O), with onnxruntime's converter."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from onnxruntime.transformers.onnx_model import OnnxModel

    proto = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    graph = OnnxModel(proto)
    graph.topological_sort()  # the converter appends its input casts after their consumers
    proto = graph.model
    set_metadata(proto, metadata)
    save_checked(proto, dst)


def quantize_dynamic(src: str | Path, dst: str | Path, metadata: dict[str, str]) -> None:
    """onnxruntime dynamic quantization: int8 weights, activations quantized at run time.

    Weights use 7 bits (``reduce_range``: integers in [-64, 64]). On x86 CPUs without VNNI
    (AVX2 only) onnxruntime multiplies uint8 activations by int8 weights with VPMADDUBSW, which
    adds two products in a saturating int16: 2 * 255 * 127 overflows it, 2 * 255 * 64 does not.
    Full 8-bit weights gave errors ~40x larger on such a machine than on a VNNI one.
    """
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as _quantize

    from onnxruntime.quantization.shape_inference import quant_pre_process

    tmp = []
    for _ in range(2):
        fd, name = tempfile.mkstemp(suffix=".onnx", dir=Path(dst).parent)
        os.close(fd)
        tmp.append(Path(name))
    try:
        # the recommended pre-processing (graph optimisation, shape inference), then quantization
        quant_pre_process(str(src), str(tmp[0]), skip_symbolic_shape=True)
        _quantize(str(tmp[0]), str(tmp[1]), weight_type=QuantType.QInt8, reduce_range=True)
        proto = onnx.load(str(tmp[1]))
    finally:
        for path in tmp:
            path.unlink(missing_ok=True)
    set_metadata(proto, metadata)
    save_checked(proto, dst)


def measure_error(reference_path: str | Path, path: str | Path, latent_dim: int, seed: int = 0,
                  batch_sizes=(1, 7, 64), num_classes: int = 0) -> dict[str, Any]:
    """Max and mean abs difference of ``path``'s decoder output from ``reference_path``'s (``num_classes`` > 0:
    a conditional decoder, fed labels too)."""
    reference, variant = load_session(reference_path), load_session(path)
    rng = np.random.default_rng(seed)
    max_err, total, count = 0.0, 0.0, 0
    classes = int(num_classes or 0)
    for batch in batch_sizes:
        feed = {contract.LATENT_INPUT: rng.standard_normal((batch, latent_dim)).astype(np.float32)}
        if classes:  # a conditional decoder: every class in turn
            feed[contract.LABEL_INPUT] = (np.arange(batch) % classes).astype(np.int32)
        diff = np.abs(variant.run(None, feed)[0].astype(np.float64) - reference.run(None, feed)[0])
        max_err, total, count = max(max_err, float(diff.max())), total + float(diff.sum()), count + diff.size
    return {"max_abs_error": max_err, "mean_abs_error": total / count, "bytes": Path(path).stat().st_size}
