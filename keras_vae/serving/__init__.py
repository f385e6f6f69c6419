"""Consumers of exported models: the onnxruntime decoder, the TF Serving kit and clients, the demos.

Importing ``serving`` (or ``keras_vae.serving.onnx_decoder``, ``keras_vae.serving.client``) never imports TensorFlow.
"""
from __future__ import annotations

_LAZY = {
    "OnnxDecoder": "keras_vae.serving.onnx_decoder",
    "OnnxEncoder": "keras_vae.serving.onnx_encoder",
    "sample_grid": "keras_vae.serving.onnx_decoder",
    "TFServingClient": "keras_vae.serving.client",
    "TFServingGrpcClient": "keras_vae.serving.client",
    "TFServingError": "keras_vae.serving.client",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = sorted(_LAZY)
