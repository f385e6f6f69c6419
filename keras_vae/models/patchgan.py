"""PatchGAN discriminator (Rivera, ICIP 2024, section 2): a stack of Conv2D layers whose output is a map of
logits, one per overlapping image patch.

Each Conv2D (kernel ``disc_kernel_size``, filters/strides from the config) is followed by
BatchNorm, then (not after the last) LeakyReLU (slope 0.3, Keras' default, as in the reference) and
Dropout (``disc_dropout``). The reference also puts Dropout on the logits, where it zeroes a quarter
of them in training (a perfect discriminator would read at most 75% accurate); under Keras 3 its
dropout never fires (networks called without ``training=``), so dropping that last Dropout changes
nothing the reference does.
A class-conditional model (``num_classes`` K > 0) gets the projection discriminator of Miyato & Koyama (2018) on
every patch: with phi(x) the per-patch features entering the last conv (average-pooled by its stride when that
is not 1) and e(y) = E^T onehot(y) a learned label embedding (``LabelProjection``, E [K, C], zero-initialized, so a
fresh conditional discriminator equals the unconditional one),

    logit_p(x, y) = f_p(x) + <e(y), phi_p(x)>,

where f_p is the unconditional PatchGAN's logit of patch p. The label then acts on what each patch's logit means
(is this patch a plausible part of a y?) rather than as extra input channels the first conv must learn to use.

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


@keras.saving.register_keras_serializable(package="keras_vae")
class LabelProjection(keras.layers.Layer):
    """[features [B, h, w, C], one-hot [B, K]] -> [B, h, w, 1]: <E^T onehot, features> at every position
    (the projection term of Miyato & Koyama 2018), E [K, C] zero-initialized, computed in float32."""

    def __init__(self, num_classes: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)

    def build(self, input_shape) -> None:
        channels = int(input_shape[0][-1])
        self.embedding = self.add_weight(name="embedding", shape=(self.num_classes, channels), initializer="zeros",
                                         dtype="float32")

    def call(self, inputs):
        features, one_hot = inputs
        embedded = keras.ops.matmul(keras.ops.cast(one_hot, "float32"), self.embedding)  # [B, C]
        products = keras.ops.cast(features, "float32") * embedded[:, None, None, :]
        return keras.ops.sum(products, axis=-1, keepdims=True)

    def compute_output_shape(self, input_shape):
        return (*input_shape[0][:-1], 1)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def build_patchgan(config: ModelConfig) -> keras.Model:
    """keras.Model: images [B, H, W, C] (and the label one-hot [B, K] when conditional) -> patch logits
    [B, h, w, 1] (float32).

    The model carries ``receptive_field`` (pixels) as an attribute.
    """
    check_resnet_geometry(config)
    images = keras.Input(shape=tuple(config.image_shape), name="images")
    x = images
    last = len(config.disc_filters) - 1
    features = None
    for i, (filters, stride) in enumerate(zip(config.disc_filters, config.disc_strides)):
        if i == last:
            features = x  # phi(x): what the last conv sees
        x = keras.layers.Conv2D(int(filters), config.disc_kernel_size, strides=int(stride), padding="same",
                                use_bias=False, name=f"conv{i}")(x)  # BatchNorm follows
        x = FusedBatchNormalization(synchronized=config.sync_batch_norm,
                                            dtype="float32" if i == last else None, name=f"bn{i}")(x)
        if i != last:
            x = keras.layers.LeakyReLU(negative_slope=0.3, name=f"lrelu{i}")(x)  # Keras' default, as the reference
            x = keras.layers.Dropout(config.disc_dropout, name=f"dropout{i}")(x)
    inputs = images
    if config.num_classes:
        label = keras.Input(shape=(config.num_classes,), name="label")
        stride = int(config.disc_strides[-1])
        if stride != 1:
            features = keras.layers.AveragePooling2D(stride, stride, padding="same", name="pool_features")(features)
        projection = LabelProjection(config.num_classes, name="label_projection")([features, label])
        x = keras.layers.Add(dtype="float32", name="with_projection")([x, projection])
        inputs = [images, label]
    logits = keras.layers.Activation("linear", dtype="float32", name="logits")(x)
    model = keras.Model(inputs, logits, name="discriminator")
    model.receptive_field = receptive_field([config.disc_kernel_size] * len(config.disc_strides),
                                            config.disc_strides)
    return model
