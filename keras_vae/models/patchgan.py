"""PatchGAN discriminator (Rivera, ICIP 2024, section 2): a stack of Conv2D layers whose output is a map of
logits, one per overlapping image patch.

Each Conv2D (kernel ``disc_kernel_size``, filters/strides from the config) is followed by
BatchNorm, then (not after the last) LeakyReLU (slope 0.3, Keras' default, as in the reference) and
Dropout (``disc_dropout``). The reference also puts Dropout on the logits, where it zeroes a quarter
of them in training (a perfect discriminator would read at most 75% accurate); under Keras 3 its
dropout never fires (networks called without ``training=``), so dropping that last Dropout changes
nothing the reference does.
Reference: filters [128, 128, 128, 64, 64, 1], strides [2, 2, 2, 1, 1, 1], kernel 3 -> a 32x32
logit map for a 256x256 image, each logit seeing a 63x63 patch.
"""
from __future__ import annotations

from typing import Sequence

import keras

from keras_vae.config import ModelConfig, check_resnet_geometry
from keras_vae.models.batchnorm import FusedBatchNormalization


def receptive_field(kernel_sizes: Sequence[int], strides: Sequence[int]) -> int:
    """Side in pixels of the input patch one output unit sees: 1 + sum_l (k_l - 1) * prod_{m<l} s_m."""
    if len(kernel_sizes) != len(strides):
        raise ValueError("kernel_sizes and strides must have the same length")
    field, jump = 1, 1
    for kernel, stride in zip(kernel_sizes, strides):
        field += (int(kernel) - 1) * jump
        jump *= int(stride)
    return field


def logit_map_shape(config: ModelConfig) -> tuple[int, int]:
    """(h, w) of the discriminator's logit map ('same' padding: ceil division by each stride)."""
    height, width = config.image_shape[:2]
    for stride in config.disc_strides:
        height, width = -(-height // stride), -(-width // stride)
    return height, width


def build_patchgan(config: ModelConfig) -> keras.Model:
    """keras.Model: images [B, H, W, C] -> patch logits [B, h, w, 1] (float32).

    The model carries ``receptive_field`` (pixels) as an attribute.
    """
    check_resnet_geometry(config)
    images = keras.Input(shape=tuple(config.image_shape), name="images")
    x = images
    last = len(config.disc_filters) - 1
    for i, (filters, stride) in enumerate(zip(config.disc_filters, config.disc_strides)):
        x = keras.layers.Conv2D(int(filters), config.disc_kernel_size, strides=int(stride), padding="same",
                                use_bias=False, name=f"conv{i}")(x)  # BatchNorm follows
        x = FusedBatchNormalization(synchronized=config.sync_batch_norm,
                                            dtype="float32" if i == last else None, name=f"bn{i}")(x)
        if i != last:
            x = keras.layers.LeakyReLU(negative_slope=0.3, name=f"lrelu{i}")(x)  # Keras' default, as the reference
            x = keras.layers.Dropout(config.disc_dropout, name=f"dropout{i}")(x)
    logits = keras.layers.Activation("linear", dtype="float32", name="logits")(x)
    model = keras.Model(images, logits, name="discriminator")
    model.receptive_field = receptive_field([config.disc_kernel_size] * len(config.disc_strides),
                                            config.disc_strides)
    return model
