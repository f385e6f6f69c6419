"""ResNetV2 (pre-activation) blocks of the paper's encoder and decoder (Rivera, ICIP 2024, section 2).

Every convolution is preceded by BatchNorm and ReLU ("pre-activation", He et al. 2016):

    identity:   y = x + Conv1x1(BR(Conv3x3(BR(Conv3x3(BR(x))))))                 (same shape)
    downsample: y = Conv1x1/2(BR(x)) + Conv1x1/2(BR(Conv3x3(BR(Conv3x3(BR(x))))))  (half size)
    upsample:   y = ConvT3x3/2(BR(x)) + ConvT3x3/2(BR(Conv1x1(BR(x))))             (double size)

with BR = ReLU(BatchNorm(.)) and /2 a stride of 2, as in the reference code (``reader.py``: the
downsampling block's last residual conv is 1x1 with stride 2). Convolutions carry no bias unless
``use_bias=True`` (the reference has biases everywhere; see ``_conv``). Each block is a Keras layer
with ``get_config``.
"""
from __future__ import annotations

from typing import Any

import keras

from keras_vae.models.batchnorm import FusedBatchNormalization


class _PreActivation(keras.layers.Layer):
    """BatchNorm -> ReLU -> convolution, the unit every block is made of."""

    def __init__(self, conv: keras.layers.Layer, sync_batch_norm: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.norm = FusedBatchNormalization(synchronized=sync_batch_norm, name="bn")  # fused kernel in training mode
        self.conv = conv

    def build(self, input_shape) -> None:
        self.norm.build(input_shape)
        self.conv.build(input_shape)
        self.built = True

    def call(self, x, training=None):
        return self.conv(keras.ops.relu(self.norm(x, training=training)))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(input_shape)


@keras.saving.register_keras_serializable(package="keras_vae")
class PointwiseStridedConv2D(keras.layers.Conv2D):
    """A 1x1 'same' convolution with stride s computed as x[:, ::s, ::s] followed by a 1x1 stride-1
    convolution: the same function (a 1x1 kernel needs no padding, so 'same' samples rows and columns
    0, s, 2s, ...) and the same weights. TF 2.21's oneDNN filter gradient of the strided 1x1
    convolution kills the process (SIGSEGV) at batch 1 on some shapes (16x16x8 input): a final batch
    of one image ended a run."""

    def convolution_op(self, inputs, kernel):
        sh, sw = self.strides
        x = inputs[:, :, ::sh, ::sw] if self.data_format == "channels_first" else inputs[:, ::sh, ::sw, :]
        return keras.ops.conv(x, kernel, strides=1, padding="valid", dilation_rate=self.dilation_rate,
                              data_format=self.data_format)


def _conv(filters: int, kernel: int, strides: int = 1, transpose: bool = False, name: str = "conv",
          use_bias: bool = False):
    """A 'same'-padded convolution, by default without bias: every path out of a block reaches a
    BatchNorm or a 1x1 convolution with bias, so a per-channel bias here is redundant (its gradient
    is round-off noise, which Adam amplifies into random updates of about the learning rate; XLA and
    mirrored runs then diverge). ``use_bias=True`` gives the reference code's layers exactly."""
    cls = keras.layers.Conv2DTranspose if transpose else keras.layers.Conv2D
    if cls is keras.layers.Conv2D and kernel == 1 and strides != 1:
        cls = PointwiseStridedConv2D  # same layer, weights and output; avoids a TF crash (see the class)
    return cls(filters, kernel, strides=strides, padding="same", use_bias=use_bias, name=name)


class _ResidualBlock(keras.layers.Layer):
    """Shared plumbing: ``filters`` output channels, ``sync_batch_norm`` for mirrored training,
    ``use_bias`` for convolutions with biases (as in the reference code)."""

    def __init__(self, filters: int, sync_batch_norm: bool = False, use_bias: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.sync_batch_norm = bool(sync_batch_norm)
        self.use_bias = bool(use_bias)

    def _conv(self, kernel: int, strides: int = 1, transpose: bool = False):
        return _conv(self.filters, kernel, strides, transpose, use_bias=self.use_bias)

    def _unit(self, conv, name: str) -> _PreActivation:
        return _PreActivation(conv, self.sync_batch_norm, name=name)

    def _build_units(self, units, input_shape) -> None:
        shape = input_shape
        for unit in units:
            unit.build(shape)
            shape = unit.compute_output_shape(shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "filters": self.filters, "sync_batch_norm": self.sync_batch_norm,
                "use_bias": self.use_bias}


@keras.saving.register_keras_serializable(package="keras_vae")
class IdentityBlock(_ResidualBlock):
    """y = x + [BR-Conv3x3, BR-Conv3x3, BR-Conv1x1](x); input channels must equal ``filters``."""

    def __init__(self, filters: int, sync_batch_norm: bool = False, use_bias: bool = False, **kwargs: Any) -> None:
        super().__init__(filters, sync_batch_norm, use_bias, **kwargs)
        self.units = [self._unit(self._conv(3), "unit1"),
                      self._unit(self._conv(3), "unit2"), self._unit(self._conv(1), "unit3")]

    def build(self, input_shape) -> None:
        if input_shape[-1] != self.filters:
            raise ValueError(f"IdentityBlock({self.filters}) needs {self.filters} input channels, "
                             f"got {input_shape[-1]}")
        self._build_units(self.units, input_shape)
        self.built = True

    def call(self, x, training=None):
        residual = x
        for unit in self.units:
            residual = unit(residual, training=training)
        return x + residual

    def compute_output_shape(self, input_shape):
        return input_shape


class _ProjectionBlock(_ResidualBlock):
    """A residual block whose shortcut is a pre-activated conv (``self.shortcut``) that changes the size."""

    def build(self, input_shape) -> None:
        self._build_units(self.units, input_shape)
        self.shortcut.build(input_shape)
        self.built = True

    def call(self, x, training=None):
        residual = x
        for unit in self.units:
            residual = unit(residual, training=training)
        return self.shortcut(x, training=training) + residual

    def compute_output_shape(self, input_shape):
        return self.shortcut.compute_output_shape(input_shape)


@keras.saving.register_keras_serializable(package="keras_vae")
class DownsamplingBlock(_ProjectionBlock):
    """y = BR-Conv1x1/2(x) + [BR-Conv3x3, BR-Conv3x3, BR-Conv1x1/2](x): half the size, ``filters`` channels."""

    def __init__(self, filters: int, sync_batch_norm: bool = False, use_bias: bool = False, **kwargs: Any) -> None:
        super().__init__(filters, sync_batch_norm, use_bias, **kwargs)
        self.units = [self._unit(self._conv(3), "unit1"),
                      self._unit(self._conv(3), "unit2"),
                      self._unit(self._conv(1, strides=2), "unit3")]
        self.shortcut = self._unit(self._conv(1, strides=2), "shortcut")


@keras.saving.register_keras_serializable(package="keras_vae")
class UpsamplingBlock(_ProjectionBlock):
    """y = BR-ConvT3x3/2(x) + [BR-Conv1x1, BR-ConvT3x3/2](x): twice the size, ``filters`` channels."""

    def __init__(self, filters: int, sync_batch_norm: bool = False, use_bias: bool = False, **kwargs: Any) -> None:
        super().__init__(filters, sync_batch_norm, use_bias, **kwargs)
        self.units = [self._unit(self._conv(1), "unit1"),
                      self._unit(self._conv(3, strides=2, transpose=True), "unit2")]
        self.shortcut = self._unit(self._conv(3, strides=2, transpose=True), "shortcut")
