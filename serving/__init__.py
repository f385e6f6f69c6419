"""Consumers of exported models: the onnxruntime decoder, the TF Serving kit and clients, the demos.

Importing ``serving`` (or ``serving.onnx_decoder``, ``serving.client``) never imports TensorFlow.
"""
from __future__ import annotations

_LAZY = {
    "OnnxDecoder": "serving.onnx_decoder",
    "OnnxEncoder": "serving.onnx_encoder",
    "sample_grid": "serving.onnx_decoder",
    "TFServingClient": "serving.client",
    "TFServingGrpcClient": "serving.client",
    "TFServingError": "serving.client",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
