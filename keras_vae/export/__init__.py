"""Exporters: a run folder -> SavedModel (TF Serving layout) + ONNX encoder/decoder, with verified parity.

``export_run(run_dir, out_dir, ...)`` is what ``keras-vae export`` calls. This package imports
TensorFlow lazily so that ``serving`` can read ``keras_vae.export.contract`` without it.

    export/contract.py     file, tensor, signature and metadata names shared with ``serving``
    export/signatures.py   the four tf.functions (scaling to [0, 1] / uint8 inside them; a label for a conditional model)
    export/savedmodel.py   ExportArchive -> savedmodel/<name>/<version>/, signature description
    export/warmup.py       TF Serving warmup records (PredictionLog) in assets.extra
    export/onnx_export.py  tf2onnx from the tf.functions, metadata_props, checker, onnxruntime load
    export/sampler_tf.py   the latent sampler in the graph: portable noise + drawing rule (sample signatures)
    export/sampler_onnx.py sampler.onnx (the drawing rule in plain ONNX ops) and the latent tolerance
    export/sampler_check.py SavedModel sample + sampler.onnx vs LatentSampler.sample
    export/class_table.py  a conditional export's per-class samplers as one padded table (sampler.onnx, sample)
    export/attributes.py   attributes.json: per-class mean codes of a labelled run (attribute vectors)
    export/quantize.py     optional float16 and dynamically quantized decoders, with measured error
    export/parity.py       Keras vs SavedModel vs onnxruntime at several batch sizes
    export/exporter.py     the pipeline: checks, temp folder, verify, atomic placement, export.json
"""
from __future__ import annotations

from typing import Any

from keras_vae.export.errors import ParityError


def export_run(run_dir, out_dir, version: int = 1, name: str | None = None, force: bool = False,
               float16: bool = False, quantize: bool = False, sampler: str | None = None,
               attributes: bool = True, progress=None) -> dict[str, Any]:
    """Export the model of ``run_dir`` into ``out_dir``; returns the export report (export.json).
    ``progress(n)`` follows its steps (``keras_vae.export.exporter.export_steps``)."""
    from keras_vae.export.exporter import export_run as _export_run  # imports TensorFlow

    return _export_run(run_dir, out_dir, version=version, name=name, force=force,
                       float16=float16, quantize=quantize, sampler=sampler, attributes=attributes,
                       progress=progress)


__all__ = ["export_run", "ParityError"]
