"""Residual encoder and decoder of the paper's model (Rivera, ICIP 2024, section 2), as functional Keras models.

Encoder: image -> LayerNorm per channel (over height and width) -> Conv3x3 -> per stage
         [identity blocks, downsampling block] -> Conv1x1 to max(1, latent/8) channels -> flatten
         -> Dense heads (mean, log_var).
Decoder: z -> Dense to the encoder's last feature shape -> Conv3x3 -> per stage [identity blocks,
         upsampling block] -> Conv1x1 from C to C channels, linear output (images in [-1, 1]); the
         last upsampling block already ends in the image's C channels, as in the reference.

A class-conditional model (``num_classes`` K > 0) gives each network a second input, the label one-hot [B, K]:
the encoder concatenates it to its flattened bottleneck features, before the Dense heads (not as constant
input channels: the per-channel input LayerNorm over height and width would map a constant channel to 0);
the decoder concatenates it to z, before ``from_latent``. With K = 0 the networks, their layer names and
weights are exactly the unconditional ones.

Stage ``i`` works at resolution size / 2^i with ``filters[i]`` channels; the decoder mirrors it.
At the paper's configuration with ``conv_bias=True`` the encoder (without its two Dense heads, which
the reference keeps in a separate ``Sampler`` layer) has the reference's 5,867,584 trainable
parameters and the decoder its 4,040,556 (tests/keras_vae/test_resnet.py).
"""
from __future__ import annotations

import keras

from keras_vae.models.blocks import DownsamplingBlock, IdentityBlock, UpsamplingBlock
from keras_vae.config import ModelConfig, check_resnet_geometry


def bottleneck_channels(latent_dim: int) -> int:
    """Channels of the encoder's last feature map: latent/8, at least 1."""
    return max(1, int(latent_dim) // 8)


def bottleneck_shape(config: ModelConfig) -> tuple[int, int, int]:
    """(h, w, c) of the encoder's last feature map (before flatten) = the decoder's first."""
    height, width, _ = config.image_shape
    factor = 2 ** config.num_stages
    return height // factor, width // factor, bottleneck_channels(config.latent_dim)


def build_resnet_encoder(config: ModelConfig) -> keras.Model:
    """keras.Model: images [B, H, W, C] (and the label one-hot [B, K] when conditional) -> [mean, log_var],
    each [B, latent_dim] (float32 heads)."""
    check_resnet_geometry(config)
    filters = config.stage_filters
    sync = config.sync_batch_norm
    images = keras.Input(shape=tuple(config.image_shape), name="images")
    x = images
    if config.input_layer_norm:
        x = keras.layers.LayerNormalization(axis=(1, 2), name="input_norm")(x)
    bias = config.conv_bias
    x = keras.layers.Conv2D(filters[0], 3, padding="same", use_bias=bias, name="stem")(x)  # BN follows
    for stage in range(config.num_stages):
        for block in range(config.encoder_identity_blocks):
            x = IdentityBlock(filters[stage], sync, bias, name=f"stage{stage}_identity{block}")(x)
        out_filters = filters[min(stage + 1, config.num_stages - 1)]
        x = DownsamplingBlock(out_filters, sync, bias, name=f"stage{stage}_down")(x)
    x = keras.layers.Conv2D(bottleneck_channels(config.latent_dim), 1, name="to_bottleneck")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    inputs = images
    if config.num_classes:
        label = keras.Input(shape=(config.num_classes,), name="label")
        x = keras.layers.Concatenate(name="with_label")([x, label])
        inputs = [images, label]
    mean = keras.layers.Dense(config.latent_dim, dtype="float32", name="mean")(x)
    log_var = keras.layers.Dense(config.latent_dim, dtype="float32", name="log_var")(x)
    return keras.Model(inputs, [mean, log_var], name="encoder")


def build_resnet_decoder(config: ModelConfig) -> keras.Model:
    """keras.Model: z [B, latent_dim] (and the label one-hot [B, K] when conditional) -> linear images
    [B, H, W, C] (float32)."""
    check_resnet_geometry(config)
    filters = config.stage_filters
    sync = config.sync_batch_norm
    shape = bottleneck_shape(config)
    z = keras.Input(shape=(config.latent_dim,), name="z")
    x, inputs = z, z
    if config.num_classes:
        label = keras.Input(shape=(config.num_classes,), name="label")
        x = keras.layers.Concatenate(name="with_label")([z, label])
        inputs = [z, label]
    x = keras.layers.Dense(shape[0] * shape[1] * shape[2], name="from_latent")(x)
    x = keras.layers.Reshape(shape, name="unflatten")(x)
    bias = config.conv_bias
    x = keras.layers.Conv2D(filters[-1], 3, padding="same", use_bias=bias, name="stem")(x)  # BN follows
    for stage in reversed(range(config.num_stages)):
        channels = filters[min(stage + 1, config.num_stages - 1)]
        for block in range(config.decoder_identity_blocks):
            x = IdentityBlock(channels, sync, bias, name=f"stage{stage}_identity{block}")(x)
        to_image = stage == 0 and config.decoder_last_block_to_image
        out_channels = config.image_shape[2] if to_image else filters[stage]
        x = UpsamplingBlock(out_channels, sync, bias, name=f"stage{stage}_up")(x)
    output = keras.layers.Conv2D(config.image_shape[2], 1, dtype="float32", name="to_image")(x)
    return keras.Model(inputs, output, name="decoder")
