"""Floating-point operation counts of Keras models and TF functions (TF's graph profiler).

Counts come from the ops of a traced graph (a multiply-add is 2 FLOPs); they cover convolutions,
matmuls and element-wise ops, which is what training throughput is made of.
"""
from __future__ import annotations

import tensorflow as tf


def graph_flops(fn, *input_specs: tf.TensorSpec) -> int:
    """FLOPs of one call of ``fn`` (a Python callable or tf.function) on inputs of ``input_specs``."""
    from tensorflow.python.profiler import model_analyzer, option_builder

    function = fn if hasattr(fn, "get_concrete_function") else tf.function(fn)
    graph = function.get_concrete_function(*input_specs).graph
    options = option_builder.ProfileOptionBuilder(option_builder.ProfileOptionBuilder.float_operation())
    options = options.with_empty_output().build()
    return int(model_analyzer.profile(graph, options=options).total_float_ops)


def forward_flops(model, batch_size: int = 1) -> int:
    """FLOPs of one inference forward pass of a single-input Keras model, per example."""
    shape = (batch_size,) + tuple(model.inputs[0].shape[1:])
    spec = tf.TensorSpec(shape, tf.float32)
    return graph_flops(lambda x: model(x, training=False), spec) // batch_size
