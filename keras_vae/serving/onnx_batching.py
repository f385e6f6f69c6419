"""How many latents one onnxruntime call decodes: big batches run as chunks whose activations stay in cache.

onnxruntime runs a graph operator by operator over the whole batch, so every intermediate tensor of
a call is ``batch x`` its per-image size. At celeba-64 one image's largest activation is 0.5 MiB
(131 x 32 x 32 float32); at batch 64 each is 34 MiB, far beyond the core's L2 cache, and the
elementwise operators, layout reorders and the blocked convolutions stream it from memory. Measured
on the 2-core AVX-512 machine (process CPU time per image, medians of interleaved rounds, same
outputs): 64 latents as one call 10.7-12.5 ms per image, as 16 calls of 4 latents 9.4-10.5 ms, as
64 calls of 1 latent 9.7-10.5 ms (one thread and two). So a call is split into chunks of about
``CHUNK_ACTIVATION_BYTES`` of largest activation: the number of images closest to it, at least one.

Splitting a batch changes nothing in the result: every operator of the decoder treats the images of
a batch independently (inference BatchNorm is a fixed affine map), so each image's output is the same
computation whatever the batch; ``OnnxDecoder`` tests check chunked and unchunked calls are equal.
The size is counted from the graph (onnx shape inference at batch 1), never from a run-time
measurement, so the choice is reproducible.
"""
from __future__ import annotations

import math

CHUNK_ACTIVATION_BYTES = 2 << 20  # one core's L2 on the measured CPU; 4 celeba-64 images


def largest_activation_bytes(path) -> int:
    """Bytes of the largest intermediate float tensor of one image through the graph at ``path``."""
    from keras_vae.serving.onnx_threads import batch1_shapes

    proto, shapes = batch1_shapes(path)
    inits = {t.name for t in proto.graph.initializer}
    largest = 0
    for name, shape in shapes.items():
        if name not in inits and shape and shape[0] == 1 and all(d > 0 for d in shape):
            largest = max(largest, 4 * math.prod(shape))
    return largest


def chunk_size(image_bytes: float, limit: int) -> int:
    """Latents per onnxruntime call: the count whose largest activation is closest to
    ``CHUNK_ACTIVATION_BYTES`` (at least 1, at most ``limit``); ``limit`` when the size is unknown (0)."""
    if image_bytes <= 0:
        return limit
    return int(min(limit, max(1, round(CHUNK_ACTIVATION_BYTES / image_bytes))))
