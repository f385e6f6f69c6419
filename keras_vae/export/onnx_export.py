"""ONNX decoder and encoder via ``tf2onnx.convert.from_function`` (``from_keras`` fails on Keras 3).

The graphs come from plain-TF tf.functions (no TFP ops: tf2onnx would write an invalid file and
exit 0), get the contract's tensor names, a dynamic batch axis named ``N`` and ``keras_vae.*``
metadata_props, and must pass ``onnx.checker`` and load in onnxruntime.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import onnx

from keras_vae.export import contract
from keras_vae.errors import ArtifactError


def model_metadata(model, role: str, source_run: str, source_sha256: str,
                   precision: str = "float32") -> dict[str, str]:
    """metadata_props of an exported file (every value a string; lists as JSON); a class-conditional model's
    carry ``keras_vae.num_classes``."""
    from keras_vae import __version__

    k = int(getattr(model, "num_classes", 0) or 0)
    return {
        **({contract.META_NUM_CLASSES: str(k)} if k else {}),
        contract.META_LATENT_DIM: str(int(model.latent_dim)),
        contract.META_IMAGE_SHAPE: json.dumps([int(s) for s in model.image_shape]),
        contract.META_VALUE_RANGE: json.dumps([0, 1]),
        contract.META_MODEL_KIND: model.model_config.kind,
        contract.META_PACKAGE_VERSION: __version__,
        contract.META_SOURCE_RUN: source_run,
        contract.META_SOURCE_SHA256: source_sha256,
        contract.META_ROLE: role,
        contract.META_PRECISION: precision,
    }


def set_metadata(proto: onnx.ModelProto, metadata: Mapping[str, str]) -> None:
    """Replace the ``keras_vae.*`` metadata_props of ``proto`` with ``metadata``."""
    keep = [p for p in proto.metadata_props if not p.key.startswith("keras_vae.")]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in keep}, **metadata})


def name_batch_axis(proto: onnx.ModelProto) -> None:
    """Name the first (dynamic) axis of every graph input and output ``N``."""
    for value in list(proto.graph.input) + list(proto.graph.output):
        dim = value.type.tensor_type.shape.dim[0]
        if dim.HasField("dim_value"):
            raise ArtifactError(f"ONNX tensor {value.name!r} has a fixed batch size {dim.dim_value}")
        dim.dim_param = contract.BATCH_AXIS


def convert_function(fn, spec, metadata: Mapping[str, str], path: str | Path,
                     opset: int = contract.ONNX_OPSET) -> onnx.ModelProto:
    """tf.function with one input (``spec``) or several (a list of specs) -> checked ONNX file at ``path``
    (tensor names kept)."""
    import tf2onnx

    specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=specs, opset=opset)
    name_batch_axis(proto)
    set_metadata(proto, metadata)
    save_checked(proto, path)
    return proto


def save_checked(proto: onnx.ModelProto, path: str | Path) -> None:
    """Run ``onnx.checker`` (full check) on ``proto``, then write it to ``path``."""
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ArtifactError(f"the exported {Path(path).name} is not valid ONNX: {first}") from None
    onnx.save_model(proto, str(path))


def load_session(path: str | Path):
    """An onnxruntime CPU session for ``path``; ArtifactError when onnxruntime refuses the file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises several types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ArtifactError(f"onnxruntime cannot load the exported {Path(path).name}: {first}") from None


def describe_onnx(path: str | Path) -> dict[str, Any]:
    """Inputs/outputs (name, dtype, shape with 'N' for the batch axis), opset and metadata of a file."""
    proto = onnx.load(str(path))

    def tensors(values):
        out = {}
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_param if d.HasField("dim_param") else int(d.dim_value) for d in t.shape.dim]
            out[v.name] = {"dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": shape}
        return out

    return {
        "opset": max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")),
        "inputs": tensors(proto.graph.input),
        "outputs": tensors(proto.graph.output),
        "metadata": {p.key: p.value for p in proto.metadata_props},
    }
