"""SavedModel for TF Serving: ``keras.export.ExportArchive`` with the named signatures (``keras_vae.export.signatures``,
``keras_vae.export.sampler_tf``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from keras_vae.export.signatures import make_functions


def write_savedmodel(model, path: str | Path, functions=None) -> dict[str, Any]:
    """Write ``model`` with the signatures of ``make_functions`` to ``path`` (must not exist)."""
    functions = functions or make_functions(model)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, spec) in functions.items():  # spec: one TensorSpec, or a list (several inputs)
        archive.add_endpoint(name, fn, input_signature=list(spec) if isinstance(spec, (list, tuple)) else [spec])
    archive.write_out(str(path), verbose=False)
    return describe_signatures(tf.saved_model.load(str(path)))


def _spec(spec: tf.TensorSpec) -> dict[str, Any]:
    return {"dtype": spec.dtype.name, "shape": [None if d is None else int(d) for d in spec.shape]}


def describe_signatures(loaded) -> dict[str, Any]:
    """{signature: {"inputs": {name: {dtype, shape}}, "outputs": {...}}} of a loaded SavedModel."""
    out = {}
    for name in sorted(loaded.signatures):
        fn = loaded.signatures[name]
        _, kwargs = fn.structured_input_signature
        out[name] = {
            "inputs": {k: _spec(v) for k, v in sorted(kwargs.items())},
            "outputs": {k: _spec(v) for k, v in sorted(fn.structured_outputs.items())},
        }
    return out


def call_signature(loaded, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Run signature ``name`` of a loaded SavedModel on NumPy inputs; NumPy outputs."""
    result = loaded.signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in result.items()}
